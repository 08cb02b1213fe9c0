use super::*;
use crate::db::dialect::Dialect::{MsSql, MySql, Oracle, Postgres as Pg, Sqlite};
use crate::ident::Ident;
use crate::value::{ColType, Value};

fn col(ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new("c").expect("ident"),
        ty,
        native: native.into(),
    }
}

fn verdict(s: (ColType, &str, Dialect), t: (ColType, &str, Dialect)) -> Verdict {
    fit(&col(s.0, s.1), s.2, &col(t.0, t.1), t.2).verdict
}

fn exact(s: (ColType, &str, Dialect), t: (ColType, &str, Dialect)) {
    assert_eq!(verdict(s, t), Verdict::Exact, "{s:?} -> {t:?}");
}

fn narrow(s: (ColType, &str, Dialect), t: (ColType, &str, Dialect), says: &str) {
    match verdict(s, t) {
        Verdict::Narrow(m) => assert!(m.contains(says), "{s:?} -> {t:?}: {m}"),
        v => panic!("{s:?} -> {t:?}: {v:?}"),
    }
}

fn refused(s: (ColType, &str, Dialect), t: (ColType, &str, Dialect), says: &str) {
    match verdict(s, t) {
        Verdict::Refused(m) => {
            assert!(m.contains(s.1) && m.contains(t.1), "both types named: {m}");
            assert!(m.contains(says), "{s:?} -> {t:?}: {m}");
        }
        v => panic!("{s:?} -> {t:?}: {v:?}"),
    }
}

use ColType as T;

#[test]
fn integers_fit_where_the_range_holds_them() {
    exact((T::Int, "smallint", Pg), (T::Int, "int", MySql));
    exact((T::Int, "int unsigned", MySql), (T::Int, "bigint", Pg));
    exact((T::Int, "bigint", Pg), (T::Int, "INTEGER", Sqlite));
    exact((T::Int, "INTEGER", Sqlite), (T::Int, "bigint", MySql));
    exact((T::Int, "tinyint", MsSql), (T::Int, "smallint", Pg));
    narrow(
        (T::Int, "bigint unsigned", MySql),
        (T::Int, "bigint", Pg),
        "only integers from",
    );
    narrow(
        (T::Int, "bigint", Pg),
        (T::Int, "integer", Pg),
        "2147483647",
    );
    exact(
        (T::Int, "bigint unsigned", MySql),
        (T::Decimal, "numeric(20,0)", Pg),
    );
    narrow(
        (T::Int, "bigint", Pg),
        (T::Decimal, "numeric(10,2)", Pg),
        "8 digits",
    );
    exact((T::Int, "int", MySql), (T::Float, "double precision", Pg));
    narrow(
        (T::Int, "bigint", Pg),
        (T::Float, "double", MySql),
        "rounded",
    );
    exact((T::Int, "year", MySql), (T::Int, "smallint", Pg));
    exact((T::Int, "year", MySql), (T::Text, "text", Pg));
}

#[test]
fn decimals_fit_by_their_digits_and_scale() {
    exact(
        (T::Decimal, "numeric(18,4)", Pg),
        (T::Decimal, "decimal(20,4)", MySql),
    );
    exact(
        (T::Decimal, "numeric(18,4)", Pg),
        (T::Decimal, "numeric", Pg),
    );
    narrow(
        (T::Decimal, "numeric", Pg),
        (T::Decimal, "decimal(38,10)", MySql),
        "unbounded",
    );
    narrow(
        (T::Decimal, "numeric(18,4)", Pg),
        (T::Decimal, "decimal(18,2)", MySql),
        "rounds",
    );
    narrow(
        (T::Decimal, "numeric(18,4)", Pg),
        (T::Decimal, "decimal(10,4)", MySql),
        "6 digits",
    );
    narrow(
        (T::Decimal, "numeric(12,2)", Pg),
        (T::Int, "bigint", MySql),
        "whole numbers",
    );
    exact((T::Decimal, "numeric(12,0)", Pg), (T::Int, "bigint", MySql));
    exact(
        (T::Decimal, "decimal(10,2)", MySql),
        (T::Text, "TEXT", Sqlite),
    );
    exact((T::Decimal, "TEXT", Sqlite), (T::Decimal, "numeric", Pg));
}

#[test]
fn text_fits_by_its_length_and_binary_is_never_text() {
    exact(
        (T::Text, "character varying(50)", Pg),
        (T::Text, "varchar(50)", MySql),
    );
    narrow(
        (T::Text, "text", Pg),
        (T::Text, "varchar(50)", MySql),
        "at most 50 characters",
    );
    exact((T::Text, "longtext", MySql), (T::Text, "TEXT", Sqlite));
    exact((T::Text, "enum('a','b')", MySql), (T::Text, "text", Pg));
    exact((T::Other, "uuid", Pg), (T::Text, "char(36)", MySql));
    exact(
        (T::Timestamp, "timestamp(6) without time zone", Pg),
        (T::Text, "varchar(30)", MySql),
    );
    narrow(
        (T::Other, "jsonb", Pg),
        (T::Text, "varchar(100)", MySql),
        "100 characters",
    );
    refused(
        (T::Bytes, "bytea", Pg),
        (T::Text, "text", Pg),
        "a binary column (bytea, varbinary, blob)",
    );
    refused(
        (T::Bytes, "blob", MySql),
        (T::Text, "longtext", MySql),
        "binary values are not text",
    );
    exact((T::Text, "text", Pg), (T::Bytes, "blob", MySql));
    exact((T::Bytes, "varbinary(64)", MySql), (T::Bytes, "bytea", Pg));
    narrow(
        (T::Text, "varchar(20)", MySql),
        (T::Int, "int", Pg),
        "whole number",
    );
}

#[test]
fn times_fit_by_their_fraction_and_range() {
    exact(
        (T::Timestamp, "timestamp(6) without time zone", Pg),
        (T::Timestamp, "datetime(6)", MySql),
    );
    narrow(
        (T::Timestamp, "timestamp without time zone", Pg),
        (T::Timestamp, "datetime", MySql),
        "declare it with (6)",
    );
    exact(
        (T::Timestamp, "datetime", MySql),
        (T::Timestamp, "timestamp(0) without time zone", Pg),
    );
    exact(
        (T::Time, "time(3)", MySql),
        (T::Time, "time without time zone", Pg),
    );
    narrow(
        (T::Time, "time without time zone", Pg),
        (T::Time, "time(3)", MySql),
        "rounds",
    );
    narrow(
        (T::TimestampTz, "timestamp with time zone", Pg),
        (T::TimestampTz, "timestamp(6)", MySql),
        "2038-01-19",
    );
    exact(
        (T::Timestamp, "datetime(6)", MySql),
        (T::TimestampTz, "timestamp with time zone", Pg),
    );
    exact(
        (T::Date, "date", MySql),
        (T::Timestamp, "TIMESTAMP", Sqlite),
    );
    narrow(
        (T::Timestamp, "datetime(6)", MySql),
        (T::Date, "date", Pg),
        "midnight",
    );
    exact(
        (T::Timestamp, "date", Oracle),
        (T::Timestamp, "datetime", MySql),
    );
    exact(
        (T::Timestamp, "datetime2", MsSql),
        (T::Timestamp, "datetime2(7)", MsSql),
    );
    narrow(
        (T::Text, "varchar(19)", MySql),
        (T::Timestamp, "timestamp(6) without time zone", Pg),
        "date or time",
    );
    refused(
        (T::Int, "bigint", Pg),
        (T::Date, "date", MySql),
        "would work: a date source column",
    );
    refused(
        (T::Date, "date", Pg),
        (T::Int, "int", MySql),
        "integer, decimal or text",
    );
    exact((T::Other, "interval", Pg), (T::Other, "interval", Pg));
    exact(
        (T::Time, "time without time zone", Pg),
        (T::Other, "interval", Pg),
    );
}

#[test]
fn parsed_types_fit_themselves_and_text_narrows_into_them() {
    exact((T::Other, "uuid", Pg), (T::Other, "uuid", Pg));
    exact((T::Other, "json", MySql), (T::Other, "jsonb", Pg));
    exact((T::Other, "jsonb", Pg), (T::Other, "json", MySql));
    narrow(
        (T::Text, "char(36)", MySql),
        (T::Other, "uuid", Pg),
        "as uuid",
    );
    narrow(
        (T::Text, "longtext", MySql),
        (T::Other, "jsonb", Pg),
        "as json",
    );
    exact((T::Int, "int", MySql), (T::Other, "jsonb", Pg));
    refused(
        (T::Other, "integer[]", Pg),
        (T::Other, "json", MySql),
        "is not JSON",
    );
    exact((T::Other, "integer[]", Pg), (T::Other, "integer[]", Pg));
    exact((T::Other, "integer[]", Pg), (T::Text, "longtext", MySql));
    refused(
        (T::Bytes, "bytea", Pg),
        (T::Other, "uuid", Pg),
        "binary values are not uuid",
    );
    refused(
        (T::Timestamp, "datetime(6)", MySql),
        (T::Other, "uuid", Pg),
        "a text exchange column",
    );
    narrow(
        (T::Text, "enum('a','b')", MySql),
        (T::Other, "mood", Pg),
        "its own type",
    );
    exact((T::Other, "inet", Pg), (T::Text, "text", MySql));
    narrow(
        (T::Other, "inet", Pg),
        (T::Text, "varchar(64)", MySql),
        "at most 64",
    );
}

#[test]
fn booleans_and_bits() {
    exact((T::Bool, "boolean", Pg), (T::Int, "tinyint(1)", MySql));
    narrow(
        (T::Int, "tinyint(1)", MySql),
        (T::Bool, "boolean", Pg),
        "only 0 and 1",
    );
    exact((T::Bool, "boolean", Pg), (T::Text, "text", Pg));
    refused(
        (T::Date, "date", Pg),
        (T::Bool, "boolean", Pg),
        "a boolean source column",
    );
    let bit8 = (T::Bytes, "bit(8)", MySql);
    let f = fit(&col(bit8.0, bit8.1), MySql, &col(T::Other, "bit(8)"), Pg);
    assert_eq!(f.verdict, Verdict::Exact);
    let conv = f.conv.expect("a conversion");
    assert_eq!(
        conv.apply(Value::Bytes(vec![0xa5])),
        Ok(Value::Text("10100101".into()))
    );
    assert_eq!(conv.apply(Value::Null), Ok(Value::Null));
    narrow(bit8, (T::Other, "bit(4)", Pg), "at most 4 bits");
    exact(bit8, (T::Text, "varchar(8)", MySql));
    narrow(
        bit8,
        (T::Text, "varchar(4)", MySql),
        "8 digits does not fit",
    );
    exact(bit8, (T::Int, "smallint", Pg));
    narrow(
        (T::Bytes, "bit(64)", MySql),
        (T::Int, "bigint", Pg),
        "only integers",
    );
    exact((T::Bytes, "bit(1)", MySql), (T::Bool, "boolean", Pg));
    exact((T::Other, "bit(10)", Pg), (T::Bytes, "bit(10)", MySql));
    refused(bit8, (T::Date, "date", Pg), "would work");
    refused(
        (T::Date, "date", Pg),
        (T::Other, "bit(8)", Pg),
        "a bit or integer source column",
    );
}

#[test]
fn bit_conversions_keep_every_digit() {
    let ten = fit(
        &col(T::Bytes, "bit(10)"),
        MySql,
        &col(T::Other, "bit(10)"),
        Pg,
    )
    .conv
    .expect("conv");
    assert_eq!(
        ten.apply(Value::Bytes(vec![0x02, 0x01])),
        Ok(Value::Text("1000000001".into()))
    );
    assert_eq!(
        ten.apply(Value::Bytes(vec![0])),
        Ok(Value::Text("0000000000".into()))
    );
    let back = fit(
        &col(T::Other, "bit(10)"),
        Pg,
        &col(T::Bytes, "bit(10)"),
        MySql,
    )
    .conv
    .expect("conv");
    assert_eq!(
        back.apply(Value::Text("1000000001".into())),
        Ok(Value::Bytes(vec![0x02, 0x01]))
    );
    let int = fit(&col(T::Bytes, "bit(12)"), MySql, &col(T::Int, "int"), Pg)
        .conv
        .expect("conv");
    assert_eq!(
        int.apply(Value::Bytes(vec![0x0f, 0xff])),
        Ok(Value::Int(4095))
    );
    let narrow = fit(
        &col(T::Other, "bit varying(16)"),
        Pg,
        &col(T::Other, "bit(4)"),
        Pg,
    )
    .conv
    .expect("conv");
    assert!(
        narrow
            .apply(Value::Text("10000".into()))
            .is_err_and(|e| e.contains("more than"))
    );
    assert_eq!(
        narrow.apply(Value::Text("0101".into())),
        Ok(Value::Text("0101".into()))
    );
    assert!(
        narrow
            .apply(Value::Text("12".into()))
            .is_err_and(|e| e.contains("not a bit string"))
    );
}

#[test]
fn sql_server_and_oracle_types_by_their_catalog_names() {
    exact(
        (T::Text, "nvarchar(50)", MsSql),
        (T::Text, "character varying(50)", Pg),
    );
    narrow(
        (T::Text, "nvarchar(max)", MsSql),
        (T::Text, "varchar(50)", MySql),
        "at most 50",
    );
    exact((T::Bool, "bit", MsSql), (T::Bool, "boolean", Pg));
    exact(
        (T::Other, "uniqueidentifier", MsSql),
        (T::Other, "uuid", Pg),
    );
    exact(
        (T::Timestamp, "datetime2(6)", MsSql),
        (T::Timestamp, "datetime(6)", MySql),
    );
    narrow(
        (T::Timestamp, "datetime2", MsSql),
        (T::Timestamp, "timestamp(6) without time zone", Pg),
        "7 digits",
    );
    exact(
        (T::TimestampTz, "datetimeoffset(6)", MsSql),
        (T::TimestampTz, "timestamp with time zone", Pg),
    );
    exact(
        (T::Float, "float", MsSql),
        (T::Float, "double precision", Pg),
    );
    narrow(
        (T::Float, "float", MsSql),
        (T::Float, "real", Pg),
        "single-precision",
    );
    exact(
        (T::Decimal, "number(12,2)", Oracle),
        (T::Decimal, "numeric(12,2)", Pg),
    );
    exact((T::Int, "number(9)", Oracle), (T::Int, "integer", Pg));
    narrow(
        (T::Int, "number(18)", Oracle),
        (T::Int, "integer", Pg),
        "only integers",
    );
    exact(
        (T::Text, "varchar2(50 char)", Oracle),
        (T::Text, "varchar(50)", MySql),
    );
    narrow(
        (T::Text, "text", Pg),
        (T::Text, "varchar2(20 char)", Oracle),
        "at most 20",
    );
    exact(
        (T::Timestamp, "timestamp(6)", Oracle),
        (T::Timestamp, "datetime(6)", MySql),
    );
    exact(
        (T::TimestampTz, "timestamp(6) with time zone", Oracle),
        (T::TimestampTz, "timestamp with time zone", Pg),
    );
    refused(
        (T::Bytes, "blob", Oracle),
        (T::Text, "clob", Oracle),
        "binary values are not text",
    );
    exact(
        (T::Bytes, "varbinary(max)", MsSql),
        (T::Bytes, "raw(2000)", Oracle),
    );
}
