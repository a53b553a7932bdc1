//! Records shared by the record module's tests.

/// Records of every shape the transform and classification meet.
pub const RECORDS: &[&str] = &[
    r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e1","time":1739388470156,"type":"LOGIN_ERROR","ipAddress":"192.0.2.1","details":{"username":"al\"ice\\\u00e9","code_id":"c","a/b":"slash","t~x":"tilde"}}}"#,
    r#"{"eventType":"admin-event","event":{"id":"a1","operationType":"CREATE","resourceType":"USER","ipAddress":null,"details":{"code_id":{"n":[1,2]}}}}"#,
    r#"{"service":"ldap","method":"bind","timestamp":1739388470,"event":"not an object","ipAddress":42}"#,
    r#"{ "eventType" : "user-event" , "event" : { "ipAddress" : 1.5e3 , "details" : { "code_id" : true } } , "x" : [ 1 , 2 ] }"#,
    r#"{"event":{"ipAddress":["192.0.2.1","192.0.2.2"],"details":{"code_id":"only"}},"list":[{"ipAddress":"x"}]}"#,
    r#"{"event":{"details":{"username":"u","code_id":"c"},"ipAddress":"i"}}"#,
    r#"{"event":{"details":{"code_id":"c","username":"u"}}}"#,
    r#"{"\u0065vent":{"details":{"username":"escaped key"}}}"#,
    r#"{"event":{"details":{"code_id":"c","code_id":"twice"}}}"#,
    r#"{"other":"nothing to do"}"#,
];
