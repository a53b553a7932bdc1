//! Local event-source runner: drives Lambda function binaries through the Lambda Runtime API with real Kinesis and EventBridge payloads.
