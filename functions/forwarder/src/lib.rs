//! authtrail forwarder: library side of the Lambda function (logic lives here, `main.rs` only wires).
