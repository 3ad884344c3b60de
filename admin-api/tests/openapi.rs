//! The OpenAPI document checked into `docs/openapi.json` is the one the code generates (and
//! serves): a change to a route or a type that is not reflected there fails here. To refresh
//! it after a deliberate change: `SV0_UPDATE_OPENAPI=1 cargo test -p sv0-admin-api --test openapi`.

use std::path::PathBuf;

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = serde_json::to_string_pretty(&sv0_admin_api::openapi_json()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("SV0_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json differs from the generated document; refresh it with \
         SV0_UPDATE_OPENAPI=1 cargo test -p sv0-admin-api --test openapi"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_covers_every_route_with_bearer_auth() {
    let doc = sv0_admin_api::openapi_json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        operations,
        39,
        "every route is documented: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security").is_some();
            assert_eq!(
                secured,
                path.starts_with("/api/v1/") && path != "/api/v1/openapi.json",
                "{method} {path}: bearer auth documented where it is required"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn every_401_documents_its_challenge() {
    let doc = sv0_admin_api::openapi_json();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(unauthorized) = operation["responses"].get("401") else {
                continue;
            };
            assert!(
                unauthorized["headers"]["WWW-Authenticate"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("invalid_token")),
                "{method} {path}: {unauthorized}"
            );
            documented += 1;
        }
    }
    assert!(documented >= 30, "{documented} operations document a 401");
}
