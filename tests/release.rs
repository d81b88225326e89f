//! The released binary (`make release`) and image (`make image`): what gets
//! copied onto nodes must run there whatever their libc, so it is linked
//! statically; the image holds it alone. `make test` builds both first.
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn released() -> Option<PathBuf> {
    let triple = String::from_utf8(Command::new("rustc").arg("-vV").output().ok()?.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))?;
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(triple)
        .join("release/natra");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: `make test` builds it (make release)",
        bin.display()
    );
    eprintln!("SKIPPED: no {} (run `make release`)", bin.display());
    None
}

#[test]
fn the_released_binary_is_statically_linked_and_runs_without_an_environment() {
    let Some(bin) = released() else { return };
    let file = Command::new("file").arg(&bin).output().expect("file(1)");
    let what = String::from_utf8_lossy(&file.stdout);
    eprintln!("{what}");
    assert!(
        what.contains("statically linked") || what.contains("static-pie linked"),
        "the released binary is dynamically linked: {what}"
    );
    let readelf = Command::new("readelf")
        .args(["-d"])
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&readelf.stdout).contains("(NEEDED)"),
        "the released binary needs shared libraries"
    );
    let out = Command::new(&bin)
        .arg("version")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("natra "));
}

#[test]
fn the_image_holds_the_static_binary_alone() {
    if released().is_none() {
        return;
    }
    let tar = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/natra-image.tar");
    assert!(tar.is_file(), "{} is missing: make image", tar.display());
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        names.lines().any(|l| l == "index.json"),
        "not an OCI layout: {names}"
    );
    // The one layer: natra at /natra, nothing else.
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let files = Command::new("tar")
        .arg("-tf")
        .arg(blob(layers[0]["digest"].as_str().unwrap()))
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    assert_eq!(
        files.trim(),
        "natra",
        "the layer holds more than natra: {files}"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/natra", "agent"])
    );
    let _ = fs::remove_dir_all(&dir);
}
