//! The server's edge against the real binary over real sockets: what it leaves on disk
//! (modes), when it can be reached (start-up), `/metrics` exposure, connection fairness
//! under a flood, and strict HTTP/1.1 framing. docs/server.md describes each behaviour.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use support::Server;

/// Every entry under `root` (itself included) whose mode is not 0700 (directories) or
/// 0600 (files), with its mode in octal.
fn wrong_modes(root: &Path) -> Vec<(PathBuf, String)> {
    let mut wrong = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    // Bounded by the directory tree, which the test keeps small.
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o7777;
        let wanted = if metadata.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            wrong.push((path.clone(), format!("{mode:o}")));
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    wrong
}

#[test]
fn data_dir_and_every_file_in_it_are_private_whatever_the_umask() {
    // Goal: the data directory is 0700 and every directory and file the server creates
    // in it 0700/0600, set by the server itself, not by the umask. Method: start the real
    // server under umask 000 (so any mode left to the umask shows as world-writable) on a
    // data directory it must create (a missing child of a temporary directory), with two
    // shards; create a queue and a group and send (segment and index files), check every
    // entry; then SIGTERM (snapshots at shutdown) and check again.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let mut server = Server::start_with_umask(&dir, &["--shards", "2"], "000");
    let client = server.client();
    client.create_queue("private", "NORMAL", None).unwrap();
    client.create_group("private", "g").unwrap();
    client
        .send("private", &[json!({"secret": 1}), json!("two")])
        .unwrap();
    let segments = std::fs::read_dir(dir.join("partitions").join("p0000"))
        .unwrap()
        .count();
    assert!(segments > 0, "the partition holds files");
    assert_eq!(wrong_modes(&dir), vec![], "while running");
    assert!(server.terminate().success());
    assert_eq!(wrong_modes(&dir), vec![], "after a graceful stop");
}
