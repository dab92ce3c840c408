//! One throw-away database per test on a real MongoDB-compatible server.

use latchkey_mongo::MongoStore;

/// Where the suites find a server: `MONGODB_URI`, which `scripts/test.sh` sets after starting one.
pub const MONGODB_URI: &str = "MONGODB_URI";

/// The URI of the server the MongoDB suites run against.
///
/// Panics with one actionable sentence (not a silent skip) when no server was provided.
pub fn server_uri() -> String {
    match std::env::var(MONGODB_URI) {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "the MongoDB suites need a server: run `scripts/test.sh` (it starts one), or set \
             MONGODB_URI=mongodb://HOST:PORT to use your own"
        ),
    }
}

/// A database that exists for one test and is dropped afterwards, also when the test fails.
pub struct TestDatabase {
    pub store: MongoStore,
    uri: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let uri = server_uri();
        let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
        let store = MongoStore::connect(&uri, Some(&name))
            .await
            .expect("MONGODB_URI is not a valid connection string");
        store
            .ensure_indexes()
            .await
            .unwrap_or_else(|e| panic!("MongoDB at {uri} is not usable: {e}"));
        Self { store, uri, name }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await; use a private runtime and client so this works whatever state the
        // test's own runtime is in.
        let (uri, name) = (self.uri.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = mongodb::Client::with_uri_str(&uri).await?;
                client.database(&name).drop().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
