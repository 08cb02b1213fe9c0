-- Tables of config/postgres.example.toml, PostgreSQL.
-- Front-end side (前置库, prefix up_) and exchange side (prefix jg_); in practice they live
-- in two databases: run the first part in the front-end database, the second in the exchange.

-- ===== front-end database =====

-- 监管行为: update-time column, indexed (the agent reads in (updated_at, key) order).
CREATE TABLE up_supervision_action (
    action_id     bigint PRIMARY KEY,
    item_code     varchar(14)  NOT NULL,     -- 监管事项编码
    object_name   varchar(200) NOT NULL,     -- 监管对象名称
    uscc          varchar(18),               -- 统一社会信用代码
    check_form    varchar(2),                -- 检查形式
    check_result  varchar(2),                -- 检查结果
    penalty       numeric(14,2),
    inspected_at  timestamp(6) NOT NULL,
    remark        text,
    updated_at    timestamp(6) NOT NULL DEFAULT localtimestamp
);
CREATE INDEX up_supervision_action_updated ON up_supervision_action (updated_at, action_id);

-- 失信企业: control columns written by the business system.
CREATE TABLE up_dishonest_enterprise (
    cd_id         varchar(100) PRIMARY KEY,
    ent_name      varchar(200) NOT NULL,
    uscc          varchar(18)  NOT NULL,
    reason        text,
    listed_on     date NOT NULL,
    cd_operation  varchar(1)   NOT NULL,     -- I / U / D
    cd_time       timestamp(6) NOT NULL DEFAULT localtimestamp
);
CREATE INDEX up_dishonest_enterprise_cd_time ON up_dishonest_enterprise (cd_time, cd_id);

-- 投诉举报: extraction flag. Each cycle reads only the rows still holding the pending value
-- (sync_sign = 0), in key order; the index finds those few rows without scanning a table that
-- is mostly exchanged already (an index for that query, not a requirement of a standard).
CREATE TABLE up_complaint (
    complaint_id    bigint PRIMARY KEY,
    complainant     varchar(50),
    content         text NOT NULL,
    received_at     timestamp(6) NOT NULL,
    sync_sign       smallint NOT NULL DEFAULT 0,   -- 0 new, 1 exchanged, 9 failed
    sync_error_desc varchar(500)
);
CREATE INDEX up_complaint_sync_sign ON up_complaint (sync_sign);

-- 监管事项目录: a code table without a change column.
CREATE TABLE up_item_catalogue (
    item_code   varchar(14)  PRIMARY KEY,
    item_name   varchar(200) NOT NULL,
    dept_code   varchar(20)  NOT NULL
);

-- An append-only log.
CREATE TABLE up_access_log (
    log_id      bigserial PRIMARY KEY,
    user_name   varchar(50) NOT NULL,
    action      varchar(200) NOT NULL,
    logged_at   timestamptz NOT NULL DEFAULT now()
);

-- ===== exchange database =====

CREATE TABLE jg_supervision_action (
    action_id     bigint PRIMARY KEY,
    item_code     varchar(14)  NOT NULL,
    object_name   varchar(200) NOT NULL,
    uscc          varchar(18),
    check_form    varchar(2),
    check_result  varchar(2),
    penalty       numeric(14,2),
    inspected_at  timestamp(6) NOT NULL,
    remark_text   text,
    updated_at    timestamp(6) NOT NULL,
    region_code   varchar(6),
    cd_operation  varchar(1),
    cd_time       timestamp(6),
    cd_batch      varchar(32),
    cd_source     varchar(32)
);

CREATE TABLE jg_dishonest_enterprise (
    cd_id         varchar(100) PRIMARY KEY,
    ent_name      varchar(200) NOT NULL,
    uscc          varchar(18)  NOT NULL,
    reason        text,
    listed_on     date NOT NULL,
    cd_operation  varchar(1)   NOT NULL,
    cd_time       timestamp(6) NOT NULL,
    cd_batch      varchar(32),
    cd_source     varchar(32)
);

CREATE TABLE jg_complaint (
    complaint_id  bigint PRIMARY KEY,
    complainant   varchar(50),
    content       text NOT NULL,
    received_at   timestamp(6) NOT NULL,
    cd_operation  varchar(1),
    cd_time       timestamp(6),
    cd_batch      varchar(32),
    cd_source     varchar(32)
);

CREATE TABLE jg_item_catalogue (
    item_code   varchar(14)  PRIMARY KEY,
    item_name   varchar(200) NOT NULL,
    dept_code   varchar(20)  NOT NULL,
    cd_batch    varchar(32)
);

CREATE TABLE jg_access_log (
    log_id      bigint PRIMARY KEY,
    user_name   varchar(50) NOT NULL,
    action      varchar(200) NOT NULL,
    logged_at   timestamptz NOT NULL
);

-- The province's rejection table ([feedback] kind = "table"), in the exchange database.
CREATE TABLE exchange_reject (
    id            bigserial PRIMARY KEY,
    table_name    varchar(128) NOT NULL,     -- the exchange table
    record_key    varchar(500) NOT NULL,     -- key values joined by | in key order
    batch_id      varchar(64),
    error_code    varchar(32),
    error_message text,
    rejected_at   timestamptz NOT NULL DEFAULT now()
);
