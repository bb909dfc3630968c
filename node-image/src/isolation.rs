//! Before Blender starts: wait until the pod's NetworkPolicy is in force. A network plugin may
//! learn a new pod's address only once its container runs (kube-network-policies without NRI
//! in the container runtime: about 0.1 s later), and until then the pod's connections are not
//! judged. So render-node connects to an address the policy blocks until a connection is
//! blocked, and only then starts Blender, which runs the scene.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use render_contract::{IsolationProbe, ProgressEvent};

use crate::blender::Stop;

/// How long a connection may take before it counts as blocked. A policy drops the SYN, so the
/// blocked connection costs this much, once per batch; one that gets through to the API server
/// takes milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// The pause after a connection that got through; it doubles up to [`MAX_INTERVAL`], so that an
/// address the policy never blocks costs the API server about 15 connections, not 100.
pub const FIRST_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait. A plugin learns a pod's address within a second or two even on a busy
/// node; connections still getting through after this mean the policy lets the address
/// through, or nothing enforces policies here, and waiting longer would change neither.
pub const BOUND: Duration = Duration::from_secs(10);

/// The API server's Service, as the kubelet tells every container.
const HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";
const PORT_ENV: &str = "KUBERNETES_SERVICE_PORT";

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub first_interval: Duration,
    pub max_interval: Duration,
    pub bound: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: CONNECT_TIMEOUT,
            first_interval: FIRST_INTERVAL,
            max_interval: MAX_INTERVAL,
            bound: BOUND,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot find the API server's Service to connect to: {0} is not set")]
    Unset(&'static str),
    #[error("cannot connect to the API server's Service at {0:?}: not an address IP:PORT")]
    Invalid(String),
}

/// The address to connect to; `env` reads the environment.
pub fn resolve(
    probe: IsolationProbe,
    env: impl Fn(&str) -> Option<String>,
) -> Result<SocketAddr, ProbeError> {
    match probe {
        IsolationProbe::Addr(addr) => Ok(addr),
        IsolationProbe::ApiServer => {
            let host = env(HOST_ENV).ok_or(ProbeError::Unset(HOST_ENV))?;
            let port = env(PORT_ENV).ok_or(ProbeError::Unset(PORT_ENV))?;
            // An IPv6 Service address comes bare (`fd00::1`).
            let text = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            text.parse().map_err(|_| ProbeError::Invalid(text))
        }
    }
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A connection was `blocked` (how) after `through` got through.
    Isolated { through: u32, blocked: String },
    /// No connection was blocked before the bound: `through` got through, and `other` failed
    /// in a way that says nothing about the policy (the last such error, if any).
    NotConfirmed { through: u32, other: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub verdict: Verdict,
    pub elapsed: Duration,
}

/// How a failed connection was blocked, if what it says is what a policy does (drop the SYN,
/// or refuse it). Other errors (no descriptor or local port left) are this pod's own.
fn blocked(e: &io::Error) -> Option<&'static str> {
    use io::ErrorKind::*;
    match e.kind() {
        TimedOut | WouldBlock => Some("timed out"),
        ConnectionRefused => Some("refused"),
        ConnectionReset => Some("reset"),
        HostUnreachable => Some("host unreachable"),
        NetworkUnreachable => Some("network unreachable"),
        PermissionDenied => Some("denied"),
        _ => None,
    }
}

/// Connect to `addr` until a connection is blocked, or until `timing.bound`.
pub async fn wait(addr: SocketAddr, timing: Timing) -> Waited {
    let start = Instant::now();
    let (mut through, mut other) = (0, None);
    let mut interval = timing.first_interval;
    loop {
        let attempt =
            tokio::task::spawn_blocking(move || TcpStream::connect_timeout(&addr, timing.timeout))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
        match attempt {
            // Closed at once: nothing is sent on it.
            Ok(_) => through += 1,
            Err(e) => match blocked(&e) {
                Some(how) => {
                    return Waited {
                        verdict: Verdict::Isolated {
                            through,
                            blocked: how.to_string(),
                        },
                        elapsed: start.elapsed(),
                    };
                }
                None => other = Some(e.to_string()),
            },
        }
        if start.elapsed() + interval >= timing.bound {
            return Waited {
                verdict: Verdict::NotConfirmed { through, other },
                elapsed: start.elapsed(),
            };
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(timing.max_interval);
    }
}

/// Wait for `probe`, if render-node was given one, heeding SIGTERM. `Ok` with a warning for
/// the termination message when isolation was not confirmed (Blender starts anyway: waiting
/// longer would not isolate the pod, and failing would stop every render where the policy
/// lets the address through or nothing enforces policies); `Err` with the signal that came
/// first.
pub async fn before_blender(
    probe: Option<IsolationProbe>,
    stop: &mut Stop,
) -> Result<Option<String>, &'static str> {
    let Some(probe) = probe else {
        return Ok(None);
    };
    let addr = match resolve(probe, |k| std::env::var(k).ok()) {
        Ok(addr) => addr,
        Err(e) => return Ok(Some(not_confirmed(e.to_string()))),
    };
    let waited = tokio::select! {
        waited = wait(addr, Timing::default()) => waited,
        name = stop.recv() => return Err(name),
    };
    let seconds = crate::tracker::round3(waited.elapsed.as_secs_f64());
    match waited.verdict {
        Verdict::Isolated { through, blocked } => {
            let event = ProgressEvent::Isolated {
                probe: addr.to_string(),
                through,
                blocked,
                waited_seconds: seconds,
            };
            println!("{}", event.to_line());
            Ok(None)
        }
        Verdict::NotConfirmed { through, other } => {
            let mut why = format!(
                "{through} connections to {addr} got through in {seconds} s and none was blocked \
                 (does the batch NetworkPolicy's egress allow {addr}, or does nothing enforce \
                 NetworkPolicies here?)"
            );
            if let Some(e) = other {
                why.push_str(&format!("; others failed: {e}"));
            }
            Ok(Some(not_confirmed(why)))
        }
    }
}

/// The warning for a batch whose isolation was not confirmed, also printed at once.
fn not_confirmed(why: String) -> String {
    let message = format!("isolation not confirmed before Blender started: {why}");
    println!(
        "{}",
        ProgressEvent::Warning {
            message: message.clone()
        }
        .to_line()
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::{FromRawFd as _, OwnedFd};

    fn quick(bound: Duration) -> Timing {
        Timing {
            timeout: Duration::from_millis(200),
            first_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(50),
            bound,
        }
    }

    /// A listener that lets connections in for `open`, then closes: what a pod sees while its
    /// plugin learns its address, then once the policy holds (refused here, dropped there).
    #[tokio::test]
    async fn waits_while_connections_get_through_and_stops_at_the_first_blocked() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Duration::from_millis(400);
        let closer = std::thread::spawn(move || {
            std::thread::sleep(open);
            drop(listener);
        });
        let waited = wait(addr, quick(Duration::from_secs(5))).await;
        closer.join().expect("closer");
        let Verdict::Isolated { through, blocked } = &waited.verdict else {
            panic!("never saw the connection blocked: {waited:?}");
        };
        assert_eq!(blocked, "refused", "{waited:?}");
        assert!(
            *through >= 3,
            "only {through} got through in {open:?}: {waited:?}"
        );
        assert!(
            waited.elapsed >= open && waited.elapsed < open + Duration::from_millis(300),
            "waited {:?} for a listener open {open:?}",
            waited.elapsed
        );
    }

    /// A listener whose accept queue is full drops new SYNs, as a NetworkPolicy does: blocked
    /// at the first try, for the cost of one timeout.
    #[tokio::test]
    async fn a_dropped_connection_costs_one_timeout() {
        // SAFETY: plain socket calls on a descriptor this test owns (OwnedFd closes it).
        let (fd, addr) = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let owned = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sap = &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(fd, sap, len), 0, "bind");
            assert_eq!(libc::listen(fd, 0), 0, "listen");
            let mut got = len;
            assert_eq!(libc::getsockname(fd, sap, &mut got), 0, "getsockname");
            let port = u16::from_be(sa.sin_port);
            (owned, SocketAddr::from(([127, 0, 0, 1], port)))
        };
        // Fill the accept queue (nothing accepts) until a connection is dropped.
        let mut held = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            held.push(s);
            assert!(held.len() < 64, "the accept queue never filled");
        }
        let timing = quick(Duration::from_secs(5));
        let waited = wait(addr, timing).await;
        drop((held, fd));
        assert_eq!(
            waited.verdict,
            Verdict::Isolated {
                through: 0,
                blocked: "timed out".into()
            }
        );
        assert!(
            waited.elapsed >= timing.timeout
                && waited.elapsed < timing.timeout + Duration::from_millis(200),
            "a blocked first try took {:?}",
            waited.elapsed
        );
    }

    /// An address the policy lets through: the wait ends at the bound, not confirmed.
    #[tokio::test]
    async fn an_address_never_blocked_ends_the_wait_at_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bound = Duration::from_millis(600);
        let waited = wait(addr, quick(bound)).await;
        drop(listener);
        let Verdict::NotConfirmed { through, other } = &waited.verdict else {
            panic!("a listener that never closed counted as blocked: {waited:?}");
        };
        assert!(*through >= 5 && other.is_none(), "{waited:?}");
        assert!(
            // The last pause may end a scheduling delay past the bound.
            waited.elapsed >= bound - Duration::from_millis(100)
                && waited.elapsed <= bound + Duration::from_millis(100),
            "waited {:?} with a bound of {bound:?}",
            waited.elapsed
        );
    }

    #[test]
    fn the_api_server_comes_from_the_kubelets_variables() {
        let env = |host: Option<&'static str>, port: Option<&'static str>| {
            move |k: &str| match k {
                HOST_ENV => host.map(String::from),
                PORT_ENV => port.map(String::from),
                _ => None,
            }
        };
        let api = IsolationProbe::ApiServer;
        assert_eq!(
            resolve(api, env(Some("10.96.0.1"), Some("443"))),
            Ok(SocketAddr::from(([10, 96, 0, 1], 443)))
        );
        assert_eq!(
            resolve(api, env(Some("fd00::1"), Some("6443"))).map(|a| a.to_string()),
            Ok("[fd00::1]:6443".to_string())
        );
        assert_eq!(
            resolve(api, env(None, Some("443"))),
            Err(ProbeError::Unset(HOST_ENV))
        );
        assert_eq!(
            resolve(api, env(Some("kubernetes"), Some("443"))),
            Err(ProbeError::Invalid("kubernetes:443".into()))
        );
        let given = SocketAddr::from(([192, 0, 2, 1], 80));
        assert_eq!(
            resolve(IsolationProbe::Addr(given), env(None, None)),
            Ok(given)
        );
    }
}
