//! The OpenAPI document is true to the router: every documented operation
//! exists (answers 401 without a token, not 404 or 405), and every record
//! field carries its class.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{Backend, spawn};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn every_documented_operation_exists_and_fields_carry_their_class() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let doc = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .body;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let concrete = path
                .replace("{id}", "x1")
                .replace("{role}", "analyst")
                .replace("{credential}", "c1");
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let answer = app
                .request(method.clone(), &concrete, None, None, &[])
                .await;
            let public = operation["security"]
                .as_array()
                .is_some_and(|s| s.is_empty());
            if public {
                assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path}: {:?}",
                    answer.body
                );
            }
            operations += 1;
        }
    }
    assert!(operations >= 40, "{operations}");
    // Undocumented routes do not exist.
    let nothing = app
        .request(Method::GET, "/v1/secrets", None, None, &[])
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);

    for (schema, field, class) in [
        ("Partner", "bank_account", "financial"),
        ("Partner", "name", "general"),
        ("Contact", "email", "pii"),
        ("Contract", "terms", "legal"),
        ("Transaction", "amount", "financial"),
    ] {
        let property = &doc["components"]["schemas"][schema]["properties"][field];
        let found = property["x-partnerdb-class"]
            .as_str()
            .or_else(|| property["anyOf"][0]["x-partnerdb-class"].as_str());
        assert_eq!(found, Some(class), "{schema}.{field}");
    }
    // Every property of every record schema carries a class.
    for schema in ["Partner", "Contact", "Contract", "Transaction"] {
        for (name, property) in doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap()
        {
            let class = property["x-partnerdb-class"]
                .as_str()
                .or_else(|| property["anyOf"][0]["x-partnerdb-class"].as_str());
            assert!(class.is_some(), "{schema}.{name}");
        }
    }
}
