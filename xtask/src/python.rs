//! The pinned Python venv the client-compatibility tests run with (`target/py-venv`), and
//! the pinned Node.js packages of the Kafka, SQS and console tests (`target/kafkajs`,
//! `target/awssdk`, `target/playwright`), and Debian's chromium for the console's.
//!
//! `ensure_venv` creates it when missing or when the pinned requirements changed since it was
//! built (a stamp file holds the requirements it was built from), installs the pins with pip
//! and returns its Python, which the test runner passes to the tests as `SLUICE_PYTHON`. The
//! packages come from PyPI, so the first run needs the registry; later runs only compare the
//! stamp. The legacy `huaweicloud-sdk-python` goes into `target/py-venv/legacy` with
//! `--no-deps`: its `openstack` package would overwrite openstacksdk's in the venv. The
//! AWS CLI v1 of the SQS query-protocol test goes into `target/py-venv/awscli` with its
//! dependencies (its older botocore conflicts with the venv's boto3); [`awscli_dir`]
//! names it for the test runner (`SLUICE_AWSCLI`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command;

/// Pins shared by every client test (`pip install -r`).
const REQUIREMENTS: &str = "adapters/http/tests/py/requirements.txt";
/// Pins of the Kafka client tests (tests/kafka_clients.rs), installed into the same venv.
const REQUIREMENTS_KAFKA: &str = "tests/kafka/requirements.txt";
/// Pins of the SQS client tests (tests/sqs_clients.rs), installed into the same venv.
const REQUIREMENTS_SQS: &str = "tests/sqs/requirements.txt";
/// Pins of the RocketMQ client tests (tests/rocketmq_clients.rs), installed into the same
/// venv.
const REQUIREMENTS_ROCKETMQ: &str = "tests/rocketmq/requirements.txt";
/// Pins installed beside the venv, not into it (`pip install --no-deps --target`).
const REQUIREMENTS_LEGACY: &str = "adapters/http/tests/py/requirements-legacy.txt";
/// Pins installed beside the venv with their dependencies (`pip install --target`): the
/// AWS CLI v1, which speaks SQS's query protocol through its own older botocore.
const REQUIREMENTS_AWSCLI: &str = "tests/sqs/requirements-awscli.txt";
/// Bump when the way the venv is built changes, so old venvs are rebuilt.
const LAYOUT_VERSION: &str = "py-venv layout 2";

/// Makes `<root>/target/py-venv` match the pinned requirements and returns its Python.
/// The base interpreter is `$SLUICE_PYTHON_BASE`, else `python3` on PATH.
pub fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target").join("py-venv");
    let python = venv.join("bin").join("python");
    let stamp_path = venv.join("requirements.stamp");
    let mut stamp = String::from(LAYOUT_VERSION);
    for requirements in [
        REQUIREMENTS,
        REQUIREMENTS_KAFKA,
        REQUIREMENTS_SQS,
        REQUIREMENTS_ROCKETMQ,
        REQUIREMENTS_LEGACY,
        REQUIREMENTS_AWSCLI,
    ] {
        let path = root.join(requirements);
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        stamp.push_str(&format!("\n--- {requirements}\n{text}"));
    }
    let built = std::fs::read_to_string(&stamp_path).ok();
    if python.exists() && built.as_deref() == Some(stamp.as_str()) {
        return Ok(python);
    }
    println!(
        "python venv: building {} from the pinned requirements",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|error| format!("removing stale {}: {error}", venv.display()))?;
    }
    let base = std::env::var_os("SLUICE_PYTHON_BASE").unwrap_or_else(|| "python3".into());
    command::run(Command::new(base).arg("-m").arg("venv").arg(&venv))?;
    let pip = || {
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]);
        pip.current_dir(root);
        pip
    };
    command::run(pip().args([
        "install",
        "--quiet",
        "-r",
        REQUIREMENTS,
        "-r",
        REQUIREMENTS_KAFKA,
        "-r",
        REQUIREMENTS_SQS,
        "-r",
        REQUIREMENTS_ROCKETMQ,
    ]))?;
    // The pins must co-install: a conflict fails here rather than in a test.
    command::run(pip().arg("check"))?;
    let legacy = venv.join("legacy");
    command::run(
        pip()
            .args(["install", "--quiet", "--no-deps", "--target"])
            .arg(&legacy)
            .args(["-r", REQUIREMENTS_LEGACY]),
    )?;
    command::run(
        pip()
            .args(["install", "--quiet", "--target"])
            .arg(awscli_dir(root))
            .args(["-r", REQUIREMENTS_AWSCLI]),
    )?;
    // Written last: an interrupted build has no stamp and is rebuilt next time.
    std::fs::write(&stamp_path, stamp)
        .map_err(|error| format!("writing {}: {error}", stamp_path.display()))?;
    Ok(python)
}

/// Where [`ensure_venv`] installs the AWS CLI v1: run it as `PYTHONPATH=<dir> python -m
/// awscli` with the venv's Python.
pub fn awscli_dir(root: &Path) -> PathBuf {
    root.join("target").join("py-venv").join("awscli")
}

/// The playwright-core package of the console's browser tests.
const PLAYWRIGHT_PACKAGE: &str = "tests/console/browser";
/// Where Debian's chromium package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes `<root>/target/playwright` hold `npm ci` of the pinned playwright-core and
/// returns its `node_modules` (`SLUICE_PLAYWRIGHT` for the tests).
pub fn ensure_playwright(root: &Path) -> Result<PathBuf, String> {
    ensure_node_package(root, PLAYWRIGHT_PACKAGE, "playwright")
}

/// Debian's `chromium` package, installed with apt-get when the browser is missing (as
/// root, else through `sudo -n`); returns the browser (`SLUICE_CHROMIUM` for the tests).
pub fn ensure_chromium() -> Result<PathBuf, String> {
    let browser = PathBuf::from(CHROMIUM);
    if browser.exists() {
        return Ok(browser);
    }
    println!("chromium: installing Debian's package");
    let apt = |args: &[&str]| {
        let uid = Command::new("id").arg("-u").output();
        let root = uid.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command::run(&mut command)
    };
    apt(&["update", "-qq"])?;
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
    ])?;
    if browser.exists() {
        Ok(browser)
    } else {
        Err(format!(
            "apt-get installed chromium but {CHROMIUM} is missing"
        ))
    }
}

/// The kafkajs package of the Kafka client tests: its package.json and lock file.
const KAFKAJS_PACKAGE: &str = "tests/kafka/kafkajs";
/// The AWS SDK for JavaScript package of the SQS client tests.
const AWS_SDK_PACKAGE: &str = "tests/sqs/awssdk";

/// Makes `<root>/target/kafkajs` hold `npm ci` of the pinned kafkajs package and returns
/// its `node_modules`, which the test runner passes to the tests as `SLUICE_KAFKAJS`.
pub fn ensure_kafkajs(root: &Path) -> Result<PathBuf, String> {
    ensure_node_package(root, KAFKAJS_PACKAGE, "kafkajs")
}

/// Makes `<root>/target/awssdk` hold `npm ci` of the pinned `@aws-sdk/client-sqs` and
/// returns its `node_modules` (`SLUICE_AWS_SDK` for the tests).
pub fn ensure_aws_sdk(root: &Path) -> Result<PathBuf, String> {
    ensure_node_package(root, AWS_SDK_PACKAGE, "awssdk")
}

/// Makes `<root>/target/<name>` hold `npm ci` of the package at `<root>/<package>` (its
/// package.json and lock file; rebuilt when either changed, by a stamp as for the venv)
/// and returns its `node_modules`.
fn ensure_node_package(root: &Path, package: &str, name: &str) -> Result<PathBuf, String> {
    let dir = root.join("target").join(name);
    let modules = dir.join("node_modules");
    let stamp_path = dir.join("lock.stamp");
    let source = root.join(package);
    let read = |name: &str| {
        let path = source.join(name);
        std::fs::read_to_string(&path)
            .map_err(|error| format!("reading {}: {error}", path.display()))
    };
    let (package, lock) = (read("package.json")?, read("package-lock.json")?);
    let stamp = format!("{package}\n{lock}");
    if modules.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(modules);
    }
    println!("{name}: installing {} from the lock file", dir.display());
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|error| format!("removing stale {}: {error}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("creating {}: {error}", dir.display()))?;
    for (name, text) in [("package.json", &package), ("package-lock.json", &lock)] {
        std::fs::write(dir.join(name), text).map_err(|error| format!("writing {name}: {error}"))?;
    }
    command::run(
        Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )?;
    std::fs::write(&stamp_path, stamp)
        .map_err(|error| format!("writing {}: {error}", stamp_path.display()))?;
    Ok(modules)
}
