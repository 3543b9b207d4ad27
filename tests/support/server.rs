//! [`TestServer`]: the server in-process on free loopback ports, built with a
//! [`Builder`]: the echo server or a Configurapi runner, with or without the management
//! API, and a TLS listener beside the plain one when a test asks for it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use configurapi_runner_ws::configurapi::{HandlerRegistry, Service};
use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use configurapi_runner_ws::{Handle, Mode, Reloaded, Reloader, Server, ServerConfig, TlsSettings};

use super::certs::Pki;
use super::client::{tcp, tls_connect, upgrade_on, Stream, Tls, Transport, Ws};
use super::frames::{client_frame, expect_close, read_frame};
use super::runner::{status_from_params, test_config, worker_only};

/// The server under test; shut down and joined on drop.
pub struct TestServer {
    pub handle: Handle,
    /// The plain WebSocket listener.
    pub addr: SocketAddr,
    /// The TLS listener, when the server has one.
    pub secure: Option<SocketAddr>,
    mgmt: Option<SocketAddr>,
    /// The transport [`TestServer::connect`] uses.
    pub transport: Transport,
    pki: Option<Pki>,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

/// What [`TestServer`] to start. The WebSocket listeners bind port 0 on loopback.
pub struct Builder {
    cfg: ServerConfig,
    app: Option<App>,
    mgmt: Option<MgmtConfig>,
    transport: Transport,
    pki: Option<Pki>,
}

/// A Configurapi runner for a YAML config.
struct App {
    yaml: String,
    registry: HandlerRegistry,
    opts: RunnerOptions,
}

impl Builder {
    /// A runner for `yaml` with the built-ins, the ws pack, the test handlers
    /// (`statusFromParamsHandler`, `workerOnlyHandler`) and whatever `register` adds.
    /// Without it the server is whatever `cfg.mode` says (echo by default).
    pub fn runner(mut self, yaml: &str, register: impl FnOnce(&mut HandlerRegistry)) -> Self {
        let mut registry = runner::registry();
        registry.register("statusFromParamsHandler", status_from_params);
        registry.register("workerOnlyHandler", worker_only);
        register(&mut registry);
        self.app = Some(App {
            yaml: yaml.to_string(),
            registry,
            opts: RunnerOptions::default(),
        });
        self
    }

    /// The runner's options (with [`Builder::runner`]).
    pub fn options(mut self, opts: RunnerOptions) -> Self {
        self.app.as_mut().expect("options are for a runner").opts = opts;
        self
    }

    /// The management API on, with these settings (see [`super::mgmt::mgmt_config`]). A
    /// runner also gets a reloader that builds the service from the same YAML again,
    /// unless `cfg.reload` has one.
    pub fn management(mut self, mcfg: MgmtConfig) -> Self {
        self.mgmt = Some(mcfg);
        self
    }

    /// Which listener [`TestServer::connect`] uses. `Tls` adds a TLS listener (with a
    /// fresh test certificate unless [`Builder::pki`] gave one).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// A TLS listener with this certificate, and TLS for [`TestServer::connect`].
    pub fn pki(mut self, pki: Pki) -> Self {
        self.pki = Some(pki);
        self.transport = Transport::Tls;
        self
    }

    pub fn start(self) -> TestServer {
        let Builder {
            mut cfg,
            app,
            mgmt,
            transport,
            mut pki,
        } = self;
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        if let Some(app) = app {
            let registry = app.registry;
            let service = Service::from_str(&app.yaml, "test.yaml", registry.clone())
                .expect("test config loads");
            let runner = Arc::new(Runner::new(service, app.opts));
            if mgmt.is_some() && cfg.reload.is_none() {
                // POST /@reload builds the service from the same YAML again.
                let (again, yaml) = (Arc::clone(&runner), app.yaml);
                cfg.reload = Some(Reloader(Arc::new(move || {
                    let service = Service::from_str(&yaml, "test.yaml", registry.clone())
                        .map_err(|e| e.to_string())?;
                    again.reload(service);
                    Ok(Reloaded {
                        tls: None,
                        summary: "config test.yaml".to_string(),
                    })
                })));
            }
            cfg.mode = Mode::App(runner);
        }
        if let Some(mcfg) = mgmt {
            cfg.management = Some(mcfg);
        }
        if transport == Transport::Tls && pki.is_none() {
            pki = Some(Pki::ecdsa());
        }
        if let Some(pki) = &pki {
            cfg.tls = Some(TlsSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                server_config: pki.server_config(),
            });
        }
        let server = Server::bind(cfg).expect("bind");
        let addr = server.local_addr();
        let secure = server.secure_addr();
        let mgmt = server.management_addr();
        let (handle, join) = server.spawn();
        TestServer {
            handle,
            addr,
            secure,
            mgmt,
            transport,
            pki,
            join: Some(join),
        }
    }
}

impl TestServer {
    /// A builder starting from `cfg`.
    pub fn builder(cfg: ServerConfig) -> Builder {
        Builder {
            cfg,
            app: None,
            mgmt: None,
            transport: Transport::Plain,
            pki: None,
        }
    }

    /// The server `cfg` describes (echo unless its mode says otherwise).
    pub fn start(cfg: ServerConfig) -> TestServer {
        TestServer::builder(cfg).start()
    }

    /// The echo server with the default settings.
    pub fn echo() -> TestServer {
        TestServer::start(ServerConfig::default())
    }

    /// The management listener's address (the config must turn it on).
    pub fn mgmt(&self) -> SocketAddr {
        self.mgmt.expect("management API configured")
    }

    /// The TLS listener's address.
    pub fn secure_addr(&self) -> SocketAddr {
        self.secure.expect("a TLS listener")
    }

    /// A raw TCP connection to the plain listener, with read/write deadlines.
    pub fn raw(&self) -> TcpStream {
        tcp(self.addr)
    }

    /// A raw TCP connection to the TLS listener (no TLS spoken yet).
    pub fn raw_secure(&self) -> TcpStream {
        tcp(self.secure_addr())
    }

    /// A client configuration that trusts the server's test CA.
    pub fn tls_client_config(&self) -> Arc<rustls::ClientConfig> {
        self.pki.as_ref().expect("a TLS listener").client_config()
    }

    /// A TLS stream to the TLS listener that finished the TLS handshake (ALPN
    /// `http/1.1`).
    pub fn tls(&self) -> Tls {
        let s = tls_connect(self.secure_addr(), self.tls_client_config()).expect("TLS handshake");
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        s
    }

    /// A connection over the server's transport (TLS handshake done), no upgrade yet.
    pub fn connect(&self) -> Stream {
        match self.transport {
            Transport::Plain => Stream::Plain(self.raw()),
            Transport::Tls => Stream::Tls(Box::new(self.tls())),
        }
    }

    /// A connection over the server's transport that completed the upgrade on `/`
    /// with extra header lines (each ending in CRLF); the response head too.
    pub fn upgraded_with(&self, extra_headers: &str) -> (Stream, String) {
        let mut s = self.connect();
        let head = upgrade_on(&mut s, "/", extra_headers);
        (s, head)
    }

    /// A raw plain-TCP socket that completed the upgrade.
    pub fn upgraded(&self) -> TcpStream {
        let mut s = self.raw();
        upgrade_on(&mut s, "/", "");
        s
    }

    /// A tungstenite client over the server's transport that finished the handshake.
    pub fn client(&self) -> tungstenite::WebSocket<Stream> {
        let url = match self.transport {
            Transport::Plain => format!("ws://{}/", self.addr),
            Transport::Tls => format!("wss://localhost:{}/", self.secure_addr().port()),
        };
        let (ws, resp) = tungstenite::client(url, self.connect()).expect("ws handshake");
        assert_eq!(resp.status().as_u16(), 101);
        ws
    }

    /// A raw-frame client on the plain listener that finished the upgrade on `/`.
    pub fn ws(&self) -> Ws {
        Ws { s: self.upgraded() }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// A runner for `yaml` with the built-ins, the ws pack and whatever `reg` adds.
pub fn start_runner(
    yaml: &str,
    reg: impl FnOnce(&mut HandlerRegistry),
    cfg: ServerConfig,
    opts: RunnerOptions,
) -> TestServer {
    TestServer::builder(cfg)
        .runner(yaml, reg)
        .options(opts)
        .start()
}

/// A runner for `yaml` with only the built-in handlers and the test defaults.
pub fn simple_runner(yaml: &str) -> TestServer {
    start_runner(yaml, |_| {}, test_config(), RunnerOptions::default())
}

/// A fresh client gets its text echoed, then closes cleanly: the server still serves
/// well-behaved clients.
pub fn echo_round_trip(srv: &TestServer) {
    let mut s = srv.upgraded();
    s.write_all(&client_frame(0x81, b"still here")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"still here".to_vec()));
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    expect_close(&mut s, 1000);
}
