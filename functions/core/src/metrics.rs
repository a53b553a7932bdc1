//! CloudWatch Embedded Metric Format: one JSON line on stdout per invocation, which CloudWatch
//! Logs turns into metrics without any API call.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{Map, Value, json};

/// Builder of one EMF record.
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: String,
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, f64, &'static str)>,
    properties: Map<String, Value>,
}

impl Emf {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Map::new(),
        }
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    /// A metric with a CloudWatch unit (`Count`, `Milliseconds`, `Bytes`, `Seconds`, ...).
    pub fn metric(mut self, name: &str, value: f64, unit: &'static str) -> Self {
        self.metrics.push((name.to_string(), value, unit));
        self
    }

    pub fn count(self, name: &str, value: u64) -> Self {
        // Counts in one invocation stay far below 2^53, where f64 stays exact.
        self.metric(name, value as f64, "Count")
    }

    /// A property: searchable in Logs Insights, not a metric.
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), value.into());
        self
    }

    /// The EMF JSON document, with the given timestamp (epoch ms).
    pub fn to_value_at(&self, timestamp_ms: i64) -> Value {
        let mut root = Map::new();
        let dims: Vec<&str> = self.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        let defs: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": [dims], "Metrics": defs}]
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert(name.clone(), Value::String(value.clone()));
        }
        for (name, value, _) in &self.metrics {
            root.insert(name.clone(), json!(value));
        }
        for (name, value) in &self.properties {
            root.insert(name.clone(), value.clone());
        }
        Value::Object(root)
    }

    pub fn to_line(&self) -> String {
        self.to_value_at(chrono::Utc::now().timestamp_millis())
            .to_string()
    }

    /// Prints the record on stdout (one line).
    pub fn emit(&self) {
        println!("{}", self.to_line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_each_metric_with_its_unit_and_dimensions() {
        let v = Emf::new("authtrail")
            .dimension("Function", "archiver")
            .count("Records", 10)
            .metric("DurationMs", 12.5, "Milliseconds")
            .property("RequestId", "r-1")
            .to_value_at(1000);
        assert_eq!(v["_aws"]["Timestamp"], 1000);
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "authtrail");
        assert_eq!(cw["Dimensions"], json!([["Function"]]));
        assert_eq!(
            cw["Metrics"][0],
            json!({"Name": "Records", "Unit": "Count"})
        );
        assert_eq!(
            cw["Metrics"][1],
            json!({"Name": "DurationMs", "Unit": "Milliseconds"})
        );
        assert_eq!(v["Function"], "archiver");
        assert_eq!(v["Records"], 10.0);
        assert_eq!(v["DurationMs"], 12.5);
        assert_eq!(v["RequestId"], "r-1");
    }

    #[test]
    fn emf_line_is_a_single_json_line() {
        let line = Emf::new("authtrail").count("X", 1).to_line();
        assert!(!line.contains('\n'));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["X"], 1.0);
    }
}
