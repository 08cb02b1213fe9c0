-- Source tables of config/examples/qcvn120.toml (QCVN 120:2019/BTTTT), PostgreSQL.
-- Column names are the standard's field names (quoted: PostgreSQL keeps their case).

-- DongBoHoSoMC: one row per dossier; the lists are JSON arrays.
CREATE TABLE mc_hoso (
    "MaHoSo"                 varchar(50) PRIMARY KEY,
    "MaTTHC"                 varchar(50) NOT NULL,
    "TenTTHC"                text,
    "MaLinhVuc"              varchar(50),
    "TenLinhVuc"             text,
    "SoBienNhan"             varchar(50),
    "ChuHoSo"                text,
    "LoaiDoiTuong"           varchar(10),
    "MaDoiTuong"             varchar(50),
    "ThongTinKhac"           text,
    "Email"                  varchar(200),
    "Fax"                    varchar(50),
    "SoDienThoai"            varchar(50),
    "TrichYeuHoSo"           text,
    "NgayTiepNhan"           timestamp(0),
    "NgayHenTra"             timestamp(0),
    "TrangThaiHoSo"          varchar(10),
    "NgayTra"                timestamp(0),
    "ThongTinTra"            text,
    "HinhThuc"               varchar(10),
    "NgayKetThucXuLy"        timestamp(0),
    "DonViXuLy"              text,
    "GhiChu"                 text,
    "TaiLieuNop"             jsonb,
    "DanhSachLePhi"          jsonb,
    "DanhSachTepDinhKemKhac" jsonb,
    "DanhSachHoSoBoSung"     jsonb,
    "DanhSachGiayToKetQua"   jsonb,
    updated_at               timestamp(6) NOT NULL DEFAULT localtimestamp
);
CREATE INDEX mc_hoso_updated ON mc_hoso (updated_at, "MaHoSo");

-- CapNhatTienDoHoSoMC: one row per processing step, appended.
CREATE TABLE mc_tiendo (
    id                       bigserial PRIMARY KEY,
    "MaHoSo"                 varchar(50) NOT NULL,
    "NguoiXuLy"              text,
    "ChucDanh"               text,
    "ThoiDiemXuLy"           timestamp(0) NOT NULL,
    "PhongBanXuLy"           text,
    "NoiDungXuLy"            text,
    "TrangThai"              varchar(10),
    "NgayBatDau"             timestamp(0),
    "NgayKetThucTheoQuyDinh" timestamp(0)
);
