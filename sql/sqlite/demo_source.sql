-- Embedded demo front-end database (前置库), SQLite.
-- SQLite has no exact decimal type: decimal columns are TEXT so every digit is kept.
-- Date-times are TEXT 'YYYY-MM-DD HH:MM:SS[.ffffff]' (lexical order = time order).

-- 监管行为 (supervision behaviour): timestamp watermark on updated_at.
CREATE TABLE up_supervision_action (
    action_id     INTEGER PRIMARY KEY,
    item_code     VARCHAR(14) NOT NULL,          -- 监管事项编码 (14 digits)
    object_name   VARCHAR(200) NOT NULL,         -- 监管对象名称
    uscc          VARCHAR(18),                   -- 统一社会信用代码
    check_form    VARCHAR(2),                    -- 检查形式 code
    check_result  VARCHAR(2),                    -- 检查结果 code
    penalty       TEXT,                          -- decimal(14,2) as text
    inspected_at  TIMESTAMP NOT NULL,
    remark        TEXT,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX up_supervision_action_updated ON up_supervision_action (updated_at);

INSERT INTO up_supervision_action VALUES
 (1001, '23000000100001', '哈尔滨市道里区鑫源食品有限公司', '91230102MA1B2C3D46', '01', '01', '0.00', '2026-11-02 09:30:00', NULL, '2026-11-02 10:00:00.000000'),
 (1002, '23000000100001', '哈尔滨市南岗区百草药房', '91350100M000100Y43', '02', '02', '5000.00', '2026-11-03 14:00:00', '责令整改“过期药品”', '2026-11-03 15:12:30.250000'),
 (1003, '23000000100002', '齐齐哈尔市龙沙区建华餐饮店', '92230202MA18XXXX1X', '01', '01', '0.00', '2026-11-04 10:15:00', NULL, '2026-11-04 11:00:00.000000'),
 (1004, '23000000100003', '牡丹江市东安区恒通物流有限公司', '91231002MA1AB2CD38', '03', '03', '20000.50', '2026-11-05 08:45:00', '罚款 20000.50 元', '2026-11-05 09:00:00.000000'),
 (1005, '23000000100003', '佳木斯市前进区O''Brien贸易商行', NULL, '01', '02', '1500.00', '2026-11-06 16:20:00', 'Tab	and newline
inside', '2026-11-06 17:00:00.000000'),
 (1006, '23000000100004', '大庆市萨尔图区石化设备有限公司', '91230602MA1C4D5E6U', '02', '01', '0.00', '2026-11-07 09:00:00', NULL, '2026-11-07 09:30:00.000000'),
 (1007, '23000000100004', '鸡西市鸡冠区诚信超市', '91230302MA1D5E6F7P', '01', '01', '0.00', '2026-11-08 13:30:00', NULL, '2026-11-08 14:00:00.000000'),
 (1008, '23000000100005', '绥化市北林区绿野农资经营部', '92231202MA1E6F7G87', '03', '02', '300.00', '2026-11-09 10:00:00', '包装标识不全', '2026-11-09 10:30:00.000000'),
 -- two records with errors the quality rules catch: a wrong check character in the credit
 -- code (1003, above), and a 10-digit item code with an unknown inspection form (1009)
 (1009, '2300000010', '黑河市爱辉区北疆粮油店', '92231102MA1F8G9H0Y', '99', '01', '0.00', '2026-11-10 11:00:00', NULL, '2026-11-10 11:30:00.000000');

-- 失信企业 (dishonest enterprises): control columns, deletes travel as D rows.
CREATE TABLE up_dishonest_enterprise (
    cd_id         VARCHAR(100) PRIMARY KEY,
    ent_name      VARCHAR(200) NOT NULL,
    uscc          VARCHAR(18) NOT NULL,
    reason        TEXT,
    listed_on     DATE NOT NULL,
    cd_operation  VARCHAR(1) NOT NULL,
    cd_time       TIMESTAMP NOT NULL
);
INSERT INTO up_dishonest_enterprise VALUES
 ('D-0001', '黑龙江省某某建筑工程有限公司', '91230100MA1F7G8H97', '拖欠农民工工资', '2026-10-01', 'I', '2026-11-01 08:00:00.000000'),
 ('D-0002', '哈尔滨某某房地产开发有限公司', '91230100MA1G8H9J0K', '虚假宣传', '2026-10-05', 'I', '2026-11-01 08:00:01.000000'),
 ('D-0003', '大庆某某化工有限公司', '91230600MA1H9J0K10', '环保处罚未履行', '2026-10-09', 'u', '2026-11-02 08:00:00.000000'),
 ('D-0004', '伊春某某林业有限公司', '91230700MA1J0K1L23', '已信用修复', '2026-09-01', 'D', '2026-11-03 08:00:00.000000');

-- 监管事项目录 (item catalogue): a small code table without a change column (digest).
CREATE TABLE up_item_catalogue (
    item_code   VARCHAR(14) PRIMARY KEY,
    item_name   VARCHAR(200) NOT NULL,
    dept_code   VARCHAR(20) NOT NULL
);
INSERT INTO up_item_catalogue VALUES
 ('23000000100001', '对食品生产经营的行政检查', 'SCJGJ'),
 ('23000000100002', '对餐饮服务的行政检查', 'SCJGJ'),
 ('23000000100003', '对道路货物运输的行政检查', 'JTYSJ'),
 ('23000000100004', '对特种设备使用的行政检查', 'SCJGJ'),
 ('23000000100005', '对农资经营的行政检查', 'NYNCJ');

-- 投诉举报 (complaints): an extraction flag (0 new, 1 exchanged, 9 failed).
CREATE TABLE up_complaint (
    complaint_id    INTEGER PRIMARY KEY,
    complainant     VARCHAR(50),
    content         TEXT NOT NULL,
    received_at     TIMESTAMP NOT NULL,
    sync_sign       INTEGER NOT NULL DEFAULT 0,
    sync_error_desc VARCHAR(500)
);
CREATE INDEX up_complaint_sync ON up_complaint (sync_sign);
INSERT INTO up_complaint (complaint_id, complainant, content, received_at) VALUES
 (1, '张三', '超市销售过期食品', '2026-11-10 09:00:00'),
 (2, '李四', '餐馆卫生条件差', '2026-11-10 10:30:00'),
 (3, NULL, '匿名举报：药店无证经营', '2026-11-11 15:45:00');
