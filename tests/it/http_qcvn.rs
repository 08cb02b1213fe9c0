//! The QCVN 120 example (config/examples/qcvn120.toml, sql/postgres/qcvn120.sql) against
//! exchange-sim: the packets the receiver got carry the standard's fields, the session from
//! the login, the unit code and the service, with dates as yyyyMMddHHmmss.

use std::path::Path;

use crate::common::{Agent, PgDb};
use crate::http::Sim;

const DOSSIER_FIELDS: &[&str] = &[
    "MaHoSo",
    "MaTTHC",
    "TenTTHC",
    "MaLinhVuc",
    "TenLinhVuc",
    "SoBienNhan",
    "ChuHoSo",
    "LoaiDoiTuong",
    "MaDoiTuong",
    "ThongTinKhac",
    "Email",
    "Fax",
    "SoDienThoai",
    "TrichYeuHoSo",
    "NgayTiepNhan",
    "NgayHenTra",
    "TrangThaiHoSo",
    "NgayTra",
    "ThongTinTra",
    "HinhThuc",
    "NgayKetThucXuLy",
    "DonViXuLy",
    "GhiChu",
    "TaiLieuNop",
    "DanhSachLePhi",
    "DanhSachTepDinhKemKhac",
    "DanhSachHoSoBoSung",
    "DanhSachGiayToKetQua",
];

const PROGRESS_FIELDS: &[&str] = &[
    "MaHoSo",
    "NguoiXuLy",
    "ChucDanh",
    "ThoiDiemXuLy",
    "PhongBanXuLy",
    "NoiDungXuLy",
    "TrangThai",
    "NgayBatDau",
    "NgayKetThucTheoQuyDinh",
];

fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[tokio::test]
async fn the_qcvn_120_example_posts_the_standards_packets() {
    let pg = PgDb::new("http_qcvn").await;
    pg.exec(&shipped("sql/postgres/qcvn120.sql")).await;
    pg.exec(
        r#"INSERT INTO mc_hoso ("MaHoSo", "MaTTHC", "TenTTHC", "ChuHoSo", "NgayTiepNhan",
               "NgayHenTra", "TrangThaiHoSo", "TaiLieuNop", "DanhSachLePhi")
           VALUES ('000.00.00.H00-260301-0001', '1.001234', 'Cấp giấy phép', 'Nguyễn Văn A',
                   '2026-03-01 08:15:30', '2026-03-10 17:00:00', '2',
                   '[{"TepDinhKemId": "1", "TenTepDinhKem": "don.pdf"}]', '[]'),
                  ('000.00.00.H00-260301-0002', '1.001234', 'Cấp giấy phép', 'Trần Thị B',
                   '2026-03-01 09:00:00', NULL, '1', NULL, NULL);
           INSERT INTO mc_tiendo ("MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy",
               "NoiDungXuLy", "TrangThai")
           VALUES ('000.00.00.H00-260301-0001', 'Lê C', 'Chuyên viên', '2026-03-02 10:20:00',
                   'Thụ lý hồ sơ', '2');"#,
    )
    .await;
    let sim_cfg: String = shipped("config/examples/exchange-sim-qcvn120.toml")
        .lines()
        .filter(|l| !l.starts_with("listen") && !l.starts_with("store"))
        .map(|l| format!("{}\n", l.replace("${env:QCVN_SECRET}", "${env:SIM_SECRET}")))
        .collect();
    let sim = Sim::start(&sim_cfg);
    let agent_cfg = shipped("config/examples/qcvn120.toml")
        .replace("http://127.0.0.1:8900", &sim.base)
        .replace("${env:QCVN_SECRET}", "${env:SIM_SECRET}")
        .replace("postgres://sync@127.0.0.1:5432/motcua", &pg.url)
        .replace("password = \"${env:MC_PASSWORD}\"\n", "")
        .replace("/var/lib/frontdb-agent", "{dir}/state");
    let agent = Agent::new(&agent_cfg);
    let out = agent
        .command()
        .env("SIM_SECRET", "sim-secret-value")
        .arg("once")
        .output()
        .expect("once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<serde_json::Value> = sim
        .requests()
        .await
        .into_iter()
        .filter(|(_, o, _)| o == "qcvn")
        .filter_map(|(_, _, body)| body.and_then(|b| serde_json::from_str(&b).ok()))
        .collect();
    assert_eq!(packets.len(), 2, "{packets:?}");
    let of = |service: &str| {
        packets
            .iter()
            .find(|p| p["service"] == service)
            .unwrap_or_else(|| panic!("no {service} packet in {packets:?}"))
    };
    let dossiers = of("DongBoHoSoMC");
    assert_eq!(dossiers["madonvi"], "000.00.00.H00");
    assert_eq!(dossiers["isUpdating"], true);
    assert!(dossiers["session"].as_str().is_some_and(|s| !s.is_empty()));
    let data = dossiers["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for d in data {
        let mut fields: Vec<&str> = d
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        let mut want = DOSSIER_FIELDS.to_vec();
        want.sort();
        assert_eq!(fields, want);
    }
    let first = data
        .iter()
        .find(|d| d["MaHoSo"] == "000.00.00.H00-260301-0001")
        .expect("first dossier");
    assert_eq!(first["NgayTiepNhan"], "20260301081530");
    assert_eq!(first["NgayHenTra"], "20260310170000");
    assert_eq!(first["ChuHoSo"], "Nguyễn Văn A");
    assert_eq!(first["TaiLieuNop"][0]["TenTepDinhKem"], "don.pdf");
    assert_eq!(first["DanhSachLePhi"], serde_json::json!([]));
    assert_eq!(first["NgayTra"], serde_json::Value::Null);

    let progress = of("CapNhatTienDoHoSoMC");
    let step = &progress["data"][0];
    let mut fields: Vec<&str> = step
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    let mut want = PROGRESS_FIELDS.to_vec();
    want.sort();
    assert_eq!(fields, want);
    assert_eq!(step["ThoiDiemXuLy"], "20260302102000");
    assert_eq!(progress["madonvi"], "000.00.00.H00");
    pg.drop().await;
}
