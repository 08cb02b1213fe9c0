-- Front-end tables of config/mariadb.example.toml, MySQL / MariaDB (utf8mb4).
-- The exchange side of that example is PostgreSQL: sql/postgres/example.sql.

CREATE TABLE up_supervision_action (
    action_id     bigint PRIMARY KEY,
    item_code     varchar(14)  NOT NULL,
    object_name   varchar(200) NOT NULL,
    uscc          varchar(18),
    check_form    varchar(2),
    check_result  varchar(2),
    penalty       decimal(14,2),
    inspected_at  datetime(6) NOT NULL,
    remark        text,
    updated_at    datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    KEY up_supervision_action_updated (updated_at, action_id)
) DEFAULT CHARSET = utf8mb4;

CREATE TABLE up_complaint (
    complaint_id    bigint PRIMARY KEY,
    complainant     varchar(50),
    content         text NOT NULL,
    received_at     datetime(6) NOT NULL,
    sync_sign       tinyint NOT NULL DEFAULT 0,   -- 0 new, 1 exchanged, 9 failed
    sync_error_desc varchar(500),
    KEY up_complaint_sync_sign (sync_sign)
) DEFAULT CHARSET = utf8mb4;
