//! A MongoDB server for the suites, and one throw-away database per test.
//!
//! Where the server comes from, in order:
//! 1. `MONGODB_URI` set: that server (no Docker needed). `scripts/test.sh` sets it after
//!    starting SecantusDB.
//! 2. Otherwise a container started with `testcontainers`, one per test, removed when the test
//!    ends (also when it fails). Image from `MONGODB_IMAGE` (default `mongo:8`).
//! 3. Neither possible: the test fails with one message saying how to provide a server.

use latchkey_mongo::MongoStore;
use std::time::{Duration, Instant};
use testcontainers::{
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
    ContainerAsync, GenericImage, ImageExt,
};

pub const MONGODB_URI: &str = "MONGODB_URI";
/// `name:tag` of the image to start when `MONGODB_URI` is not set.
pub const MONGODB_IMAGE: &str = "MONGODB_IMAGE";
/// `host` runs the container on the host network (for Docker set up without a bridge).
pub const MONGODB_CONTAINER_NETWORK: &str = "MONGODB_CONTAINER_NETWORK";
/// Overrides the container command; `{host}` and `{port}` are substituted.
pub const MONGODB_IMAGE_CMD: &str = "MONGODB_IMAGE_CMD";
/// Overrides the log line that means "ready" (stdout or stderr).
pub const MONGODB_IMAGE_WAIT_MESSAGE: &str = "MONGODB_IMAGE_WAIT_MESSAGE";
const DEFAULT_IMAGE: &str = "mongo:8";
const MONGO_PORT: u16 = 27017;

/// A server that lives as long as this value.
pub enum MongoServer {
    External {
        uri: String,
    },
    Container {
        uri: String,
        _container: Box<ContainerAsync<GenericImage>>,
    },
}

impl MongoServer {
    pub fn uri(&self) -> &str {
        match self {
            MongoServer::External { uri } | MongoServer::Container { uri, .. } => uri,
        }
    }

    /// The server this test should use; panics with instructions when there is none.
    pub async fn provide() -> Self {
        if let Some(uri) = std::env::var(MONGODB_URI)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            return MongoServer::External { uri };
        }
        let spec = ContainerSpec::from_env();
        match spec.start().await {
            Ok(server) => server,
            Err(cause) => panic!(
                "the MongoDB suites need a server and none could be started.\n  \
                 Either set MONGODB_URI=mongodb://HOST:PORT to use a running server,\n  \
                 or make Docker available so testcontainers can start {image} \
                 (choose another image with {MONGODB_IMAGE}=name:tag).\n  \
                 Cause: {cause}",
                image = spec.image()
            ),
        }
    }
}

/// How to run the chosen image: its command, readiness signal and networking.
struct ContainerSpec {
    name: String,
    tag: String,
    host_network: bool,
    port: u16,
    cmd: Vec<String>,
    wait_message: Option<String>,
}

impl ContainerSpec {
    fn from_env() -> Self {
        let image = std::env::var(MONGODB_IMAGE).unwrap_or_else(|_| DEFAULT_IMAGE.into());
        let (name, tag) = match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
            _ => (image.clone(), "latest".to_owned()),
        };
        let host_network = std::env::var(MONGODB_CONTAINER_NETWORK).as_deref() == Ok("host");
        // On the host network every container needs its own port; behind a bridge they can
        // all listen on the standard one and Docker maps it.
        let (host, port) = if host_network {
            ("127.0.0.1", crate::free_port())
        } else {
            ("0.0.0.0", MONGO_PORT)
        };
        let secantus = name.contains("secantus");
        let cmd_template = std::env::var(MONGODB_IMAGE_CMD).unwrap_or_else(|_| {
            if secantus {
                "python3 -m secantus --host {host} --port {port} --storage-path :memory:".into()
            } else {
                "mongod --bind_ip {host} --port {port}".into()
            }
        });
        let cmd = cmd_template
            .split_whitespace()
            .map(|part| {
                part.replace("{host}", host)
                    .replace("{port}", &port.to_string())
            })
            .collect();
        // mongod logs this once it accepts connections; SecantusDB has no such line at the
        // default log level, so readiness is a TCP connect (done for every image anyway).
        let wait_message = std::env::var(MONGODB_IMAGE_WAIT_MESSAGE)
            .ok()
            .or_else(|| (!secantus).then(|| "Waiting for connections".to_owned()));
        Self {
            name,
            tag,
            host_network,
            port,
            cmd,
            wait_message,
        }
    }

    fn image(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    async fn start(&self) -> Result<MongoServer, String> {
        let mut image = GenericImage::new(self.name.clone(), self.tag.clone());
        if let Some(message) = &self.wait_message {
            image = image.with_wait_for(WaitFor::message_on_either_std(message.clone()));
        }
        if !self.host_network {
            image = image.with_exposed_port(MONGO_PORT.tcp());
        }
        let mut request = image
            .with_cmd(self.cmd.clone())
            .with_startup_timeout(Duration::from_secs(60));
        if self.host_network {
            request = request.with_network("host");
        }
        let container = request.start().await.map_err(|e| e.to_string())?;
        let (host, port) = if self.host_network {
            ("127.0.0.1".to_owned(), self.port)
        } else {
            let host = container.get_host().await.map_err(|e| e.to_string())?;
            let port = container
                .get_host_port_ipv4(MONGO_PORT)
                .await
                .map_err(|e| e.to_string())?;
            (host.to_string(), port)
        };
        wait_for_tcp(&host, port, Duration::from_secs(30)).await?;
        Ok(MongoServer::Container {
            uri: format!("mongodb://{host}:{port}/?directConnection=true"),
            _container: Box::new(container),
        })
    }
}

async fn wait_for_tcp(host: &str, port: u16, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match tokio::net::TcpStream::connect((host, port)).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > limit => {
                return Err(format!(
                    "the container never accepted connections on {host}:{port}: {e}"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A database that exists for one test, dropped afterwards (also when the test fails).
pub struct TestDatabase {
    pub store: MongoStore,
    name: String,
    // Declared last: dropped after `Drop::drop` below has used it.
    server: MongoServer,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = MongoServer::provide().await;
        let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
        let timeout = crate::http::test_config().store.operation_timeout;
        let store = MongoStore::connect(server.uri(), Some(&name), timeout)
            .await
            .expect("the MongoDB URI is not a valid connection string");
        store
            .ensure_indexes()
            .await
            .unwrap_or_else(|e| panic!("MongoDB at {} is not usable: {e}", server.uri()));
        Self {
            store,
            name,
            server,
        }
    }

    pub fn uri(&self) -> &str {
        self.server.uri()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A container goes away with everything in it; a shared server needs the clean-up.
        let MongoServer::External { uri } = &self.server else {
            return;
        };
        // Drop cannot await; use a private runtime and client so this works whatever state the
        // test's own runtime is in.
        let (uri, name) = (uri.clone(), self.name.clone());
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
