//! Generates the RocketMQ v2 messages (`proto/apache/rocketmq/v2`) with prost-build, from
//! descriptors that `protox` compiles in pure Rust, so that no `protoc` is needed.

fn main() {
    let files = [
        "proto/apache/rocketmq/v2/definition.proto",
        "proto/apache/rocketmq/v2/service.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("the .proto files compile");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)
        .expect("prost-build generates the messages");
}
