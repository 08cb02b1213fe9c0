-- Embedded demo exchange database (the province's side), SQLite.
-- Exchange tables carry the control columns the agent fills.

CREATE TABLE jg_supervision_action (
    action_id     INTEGER PRIMARY KEY,
    item_code     VARCHAR(14) NOT NULL,
    object_name   VARCHAR(200) NOT NULL,
    uscc          VARCHAR(18),
    check_form    VARCHAR(2),
    check_result  VARCHAR(2),
    penalty       TEXT,
    inspected_at  TIMESTAMP NOT NULL,
    remark        TEXT,
    updated_at    TIMESTAMP NOT NULL,
    region_code   VARCHAR(6),
    cd_operation  VARCHAR(1),
    cd_time       TIMESTAMP,
    cd_batch      VARCHAR(32),
    cd_source     VARCHAR(32)
);

CREATE TABLE jg_dishonest_enterprise (
    cd_id         VARCHAR(100) PRIMARY KEY,
    ent_name      VARCHAR(200) NOT NULL,
    uscc          VARCHAR(18) NOT NULL,
    reason        TEXT,
    listed_on     DATE NOT NULL,
    cd_operation  VARCHAR(1) NOT NULL,
    cd_time       TIMESTAMP NOT NULL,
    cd_batch      VARCHAR(32),
    cd_source     VARCHAR(32)
);

CREATE TABLE jg_item_catalogue (
    item_code   VARCHAR(14) PRIMARY KEY,
    item_name   VARCHAR(200) NOT NULL,
    dept_code   VARCHAR(20) NOT NULL,
    cd_batch    VARCHAR(32)
);

CREATE TABLE jg_complaint (
    complaint_id    INTEGER PRIMARY KEY,
    complainant     VARCHAR(50),
    content         TEXT NOT NULL,
    received_at     TIMESTAMP NOT NULL,
    cd_operation    VARCHAR(1),
    cd_time         TIMESTAMP,
    cd_batch        VARCHAR(32),
    cd_source       VARCHAR(32)
);

-- The province's rejection table ([feedback] kind = "table"): it writes here the records that
-- fail its checks; the agent reads them back.
CREATE TABLE exchange_reject (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name    VARCHAR(128) NOT NULL,
    record_key    VARCHAR(500) NOT NULL,
    batch_id      VARCHAR(64),
    error_code    VARCHAR(32),
    error_message TEXT,
    rejected_at   TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
