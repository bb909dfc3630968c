//! `kubectl render ui`: a web page on 127.0.0.1 showing the namespace's renders, each with its
//! batches, failures, newest frame and preview, made from the user's kubeconfig alone. Images
//! and the video come from the storage claim through one reader pod per claim (the transfer
//! pod, claim mounted read-only), deleted when the ui stops.

pub mod html;
pub mod range;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{AttachedProcess, ListParams, LogParams};
use kube::{Api, ResourceExt as _};
use render_contract::preview::{THUMBS_DIR, output_dir};
use renderfarm_api::names::{BATCH_LABEL, CONTAINER, RENDERJOB_LABEL, renderjob_label};
use serde_json::json;
use tokio::sync::Mutex;

use crate::cli::{Global, Transfer, Ui};
use crate::cluster::Ctx;
use crate::error::{Error, Result};
use crate::pod::{Access, MOUNT, TransferPod};
use crate::preview::{self, Render, claim_path};
use html::{FailedView, url_segment};

/// Lines of a failed batch's log the page shows.
const LOG_LINES: i64 = 20;
/// Failed batches shown with their logs (the rest are in `kubectl render status`).
const MAX_FAILED: usize = 8;
/// After a reader pod failed to start, wait this long before trying again.
const RETRY_READER: Duration = Duration::from_secs(30);
const STARTING: &str = "starting the reader pod";

enum Reader {
    Starting,
    Up(Arc<TransferPod>),
    Broken(String, Instant),
}

struct UiState {
    ctx: Ctx,
    transfer: Transfer,
    readers: Mutex<HashMap<String, Reader>>,
    /// Log tails of failed pods by pod UID: a finished pod's log does not change.
    logs: std::sync::Mutex<HashMap<String, String>>,
    hosts: Vec<String>,
}

type Shared = Arc<UiState>;

pub async fn run(global: &Global, args: &Ui) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    ctx.check_crd().await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(Error::io(format!("listening on 127.0.0.1:{}", args.port)))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("listening"))?
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let state: Shared = Arc::new(UiState {
        ctx: ctx.clone(),
        transfer: args.transfer.clone(),
        readers: Mutex::new(HashMap::new()),
        logs: std::sync::Mutex::new(HashMap::new()),
        hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
    });
    let app = Router::new()
        .route("/", get(list_page))
        .route("/r/{name}", get(render_page))
        .route("/api/renders", get(api_list))
        .route("/api/r/{name}", get(api_render))
        .route("/files/{name}/thumbs/{file}", get(thumb_file))
        .route("/files/{name}/video", get(video_file))
        .route("/files/{name}/contact", get(contact_file))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(middleware::from_fn_with_state(state.clone(), local_only))
        .with_state(state.clone());
    crate::out!(
        "kubectl render ui: the renders of namespace {} at {url} (Ctrl-C stops it)",
        ctx.namespace
    );
    if args.open {
        open(&url);
    }
    let served = tokio::select! {
        r = axum::serve(listener, app).into_future() => r.map_err(Error::io("serving")),
        () = stop_signal() => Ok(()),
    };
    // Open streams end with the process; the reader pods go first.
    let readers = std::mem::take(&mut *state.readers.lock().await);
    for reader in readers.into_values() {
        if let Reader::Up(pod) = reader {
            pod.remove().await;
            eprintln!("deleted reader pod {}", pod.name);
        }
    }
    served
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("cannot start {opener} ({e}): open {url} yourself");
    }
}

/// Only requests addressed to 127.0.0.1 or localhost: a page elsewhere that points a name of
/// its own at 127.0.0.1 (DNS rebinding) must not read the cluster through the user's
/// kubeconfig.
async fn local_only(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if st.hosts.iter().any(|h| h == host) {
        next.run(req).await
    } else {
        text(StatusCode::FORBIDDEN, format!("unexpected Host {host:?}"))
    }
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn html_response(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response(v: serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

fn error_response(e: &Error) -> Response {
    let code = match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_GATEWAY,
    };
    text(code, e.to_string())
}

async fn list_page(State(st): State<Shared>) -> Response {
    let rows = match preview::list(&st.ctx).await {
        Ok(renders) => html::list_rows(&renders, Timestamp::now()),
        Err(e) => format!(
            "<tr><td colspan=\"6\" class=\"bad\">{}</td></tr>",
            html::esc(&e.to_string())
        ),
    };
    html_response(html::list_page(&st.ctx.namespace, &rows))
}

async fn api_list(State(st): State<Shared>) -> Response {
    match preview::list(&st.ctx).await {
        Ok(renders) => json_response(json!({
            "rows": html::list_rows(&renders, Timestamp::now()),
            "renders": renders.iter().map(|r| {
                let s = r.rj.status.clone().unwrap_or_default();
                json!({"name": r.rj.name_any(), "phase": s.phase.as_str(),
                       "rendered": s.frames.rendered, "total": s.frames.total})
            }).collect::<Vec<_>>(),
        })),
        Err(e) => error_response(&e),
    }
}

async fn render_page(State(st): State<Shared>, Path(name): Path<String>) -> Response {
    match live(&st, &name).await {
        Ok((_, live_html)) => html_response(html::render_page(&name, &live_html)),
        Err(e) => error_response(&e),
    }
}

/// The render, and its page's changing part.
async fn live(st: &UiState, name: &str) -> Result<(Render, String)> {
    let r = preview::get(&st.ctx, name).await?;
    let jobs: Api<Job> = st.ctx.api();
    let selector = format!("{RENDERJOB_LABEL}={}", renderjob_label(name));
    let jobs = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| st.ctx.unreachable(e))?
        .items;
    let cells = html::batch_cells(&r.rj, &jobs);
    let failed = st.failed(&r).await;
    let html = html::live(&r, &cells, &failed, Timestamp::now());
    Ok((r, html))
}

async fn api_render(State(st): State<Shared>, Path(name): Path<String>) -> Response {
    let (r, live_html) = match live(&st, &name).await {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let seg = url_segment(&name);
    let (thumb, caption) = match st.newest_thumbnail(&r).await {
        Ok(Some(file)) => (
            Some(format!("/files/{seg}/thumbs/{}", url_segment(&file))),
            file,
        ),
        Ok(None) => (None, "No frame yet".to_string()),
        Err(e) if e == STARTING => (None, "Starting the reader pod ...".to_string()),
        Err(e) => (None, format!("Frames cannot be shown: {e}")),
    };
    // The files' names stay when a render is made again; the query tells the browser it is new.
    let version = r.rj.metadata.resource_version.clone().unwrap_or_default();
    let ready = r.preview.as_ref().filter(|p| p.ready());
    let preview_version = ready
        .map(|p| {
            format!(
                "{}-{}",
                p.frames.unwrap_or(0),
                r.rj.metadata.generation.unwrap_or(0)
            )
        })
        .unwrap_or_default();
    let video = ready
        .and_then(|p| p.video.as_ref())
        .map(|_| format!("/files/{seg}/video?v={preview_version}"));
    let contact = ready
        .and_then(|p| p.contact_sheet.as_ref())
        .map(|_| format!("/files/{seg}/contact?v={preview_version}"));
    let s = r.rj.status.clone().unwrap_or_default();
    json_response(json!({
        "live": live_html,
        "thumb": thumb,
        "thumbCaption": caption,
        "previewNote": html::preview_note(&r),
        "previewState": r.preview.as_ref().map(|p| p.state.clone()),
        "previewFrames": r.preview.as_ref().and_then(|p| p.frames),
        "fps": r.fps,
        "video": video,
        "contact": contact,
        "phase": s.phase.as_str(),
        "rendered": s.frames.rendered,
        "total": s.frames.total,
        "resourceVersion": version,
    }))
}

/// A thumbnail's file name as render-node writes it: no directories, no hidden or temporary
/// files.
pub fn is_thumbnail_name(name: &str) -> bool {
    name.ends_with(".jpg")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `<mount>/<frames dir>/.thumbs`.
fn thumbs_dir(r: &Render) -> String {
    format!("{MOUNT}/{}{THUMBS_DIR}", output_dir(&r.rj.output_path()))
}

impl UiState {
    /// The claim's reader pod. The first ask starts it in the background and every ask
    /// until it runs gets "starting", so no page request waits on a pod being scheduled.
    async fn reader(
        self: &Arc<Self>,
        claim: &str,
    ) -> std::result::Result<Arc<TransferPod>, String> {
        let mut readers = self.readers.lock().await;
        match readers.get(claim) {
            Some(Reader::Up(pod)) => return Ok(pod.clone()),
            Some(Reader::Starting) => return Err(STARTING.into()),
            Some(Reader::Broken(why, at)) if at.elapsed() < RETRY_READER => {
                return Err(why.clone());
            }
            _ => {}
        }
        readers.insert(claim.to_string(), Reader::Starting);
        let (st, claim) = (self.clone(), claim.to_string());
        tokio::spawn(async move {
            let start = || TransferPod::start_as(&st.ctx, &claim, &st.transfer, Access::Reader);
            let mut started = start().await;
            if let Err(e) = &started {
                // A reader that ended at once (seen once on kind, Failed with no reason
                // given) gets one more try before the page says it cannot show frames.
                eprintln!("reader pod for claim {claim}: {e}; trying again");
                started = start().await;
            }
            let reader = match started {
                Ok(pod) => {
                    eprintln!("reader pod {} mounts claim {claim} read-only", pod.name);
                    Reader::Up(Arc::new(pod))
                }
                Err(e) => {
                    eprintln!("reader pod for claim {claim}: {e}");
                    Reader::Broken(e.to_string(), Instant::now())
                }
            };
            st.readers.lock().await.insert(claim, reader);
        });
        Err(STARTING.into())
    }

    /// A reader that failed an exec is gone (deadline, deleted): the next request starts
    /// another.
    async fn forget(&self, claim: &str, pod: &TransferPod) {
        let mut readers = self.readers.lock().await;
        if matches!(readers.get(claim), Some(Reader::Up(p)) if p.name == pod.name) {
            readers.remove(claim);
            pod.remove().await;
        }
    }

    /// The newest thumbnail in the frames' `.thumbs/` (it changes while a batch renders), else
    /// the one status names.
    async fn newest_thumbnail(
        self: &Arc<Self>,
        r: &Render,
    ) -> std::result::Result<Option<String>, String> {
        let from_status = r
            .last_frame
            .as_ref()
            .and_then(|l| l.thumbnail.as_deref())
            .and_then(|t| t.rsplit('/').next())
            .filter(|n| is_thumbnail_name(n))
            .map(str::to_string);
        let claim = &r.rj.spec.storage.claim_name;
        let pod = self.reader(claim).await?;
        match pod.newest_first(&thumbs_dir(r)).await {
            Ok(names) => Ok(names
                .into_iter()
                .find(|n| is_thumbnail_name(n))
                .or(from_status)),
            Err(e) => {
                self.forget(claim, &pod).await;
                Err(e.to_string())
            }
        }
    }

    /// The status's failed batches with the tail of their newest pod's log.
    async fn failed(&self, r: &Render) -> Vec<FailedView> {
        let status = r.rj.status.clone().unwrap_or_default();
        if status.failed_batches.is_empty() {
            return Vec::new();
        }
        let pods: Api<Pod> = self.ctx.api();
        let selector = format!("{RENDERJOB_LABEL}={}", renderjob_label(&r.rj.name_any()));
        let pods_list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut out = Vec::new();
        for f in status.failed_batches.iter().take(MAX_FAILED) {
            let newest = pods_list
                .iter()
                .filter(|p| p.labels().get(BATCH_LABEL) == Some(&f.index.to_string()))
                .max_by_key(|p| p.creation_timestamp());
            let log_tail = match newest {
                Some(p) => self.log_tail(&pods, p).await,
                None => None,
            };
            out.push(FailedView {
                index: f.index,
                frames: f.frames.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
                attempts: f.attempts,
                exit_code: f.exit_code,
                log_tail,
            });
        }
        out
    }

    async fn log_tail(&self, pods: &Api<Pod>, pod: &Pod) -> Option<String> {
        let uid = pod.uid().unwrap_or_default();
        if let Some(t) = self.logs.lock().ok().and_then(|l| l.get(&uid).cloned()) {
            return Some(t);
        }
        let lp = LogParams {
            container: Some(CONTAINER.to_string()),
            tail_lines: Some(LOG_LINES),
            ..Default::default()
        };
        let tail = pods.logs(&pod.name_any(), &lp).await.ok()?;
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        );
        if finished && let Ok(mut logs) = self.logs.lock() {
            logs.insert(uid, tail.clone());
        }
        Some(tail)
    }

    /// Stream a file of the claim, the asked byte range of it when there is one.
    async fn serve(
        self: &Arc<Self>,
        claim: &str,
        path: &str,
        content_type: &str,
        headers: &HeaderMap,
    ) -> Response {
        let pod = match self.reader(claim).await {
            Ok(p) => p,
            Err(why) if why == STARTING => return text(StatusCode::SERVICE_UNAVAILABLE, why),
            Err(why) => return text(StatusCode::BAD_GATEWAY, why),
        };
        let size = match pod.size(path).await {
            Ok(Some(size)) => size,
            Ok(None) => return text(StatusCode::NOT_FOUND, format!("{path} is not in the claim")),
            Err(e) => {
                self.forget(claim, &pod).await;
                return text(StatusCode::BAD_GATEWAY, e.to_string());
            }
        };
        let asked = headers.get(header::RANGE).and_then(|h| h.to_str().ok());
        let (code, range) = match range::parse(asked, size) {
            Ok(None) => (StatusCode::OK, None),
            Ok(Some(r)) => (StatusCode::PARTIAL_CONTENT, Some(r)),
            Err(range::Unsatisfiable) => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                    .body(Body::empty())
                    .unwrap_or_else(|_| StatusCode::RANGE_NOT_SATISFIABLE.into_response());
            }
        };
        let (len, read) = match range {
            None => (size, None),
            Some((first, last)) => (last - first + 1, Some((first, last - first + 1))),
        };
        let body = if len == 0 {
            Body::empty()
        } else {
            match pod.read(path, read).await {
                Ok((proc, out)) => stream_body(proc, out),
                Err(e) => {
                    self.forget(claim, &pod).await;
                    return text(StatusCode::BAD_GATEWAY, e.to_string());
                }
            }
        };
        let mut builder = Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CACHE_CONTROL, "no-cache");
        if let Some((first, last)) = range {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            );
        }
        builder
            .body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// The exec's stdout as a response body; the exec ends with the stream (or when the browser
/// stops reading, which drops it).
fn stream_body(
    proc: AttachedProcess,
    out: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> Body {
    let chunks = tokio_util::io::ReaderStream::with_capacity(out, 64 * 1024);
    let stream = futures::stream::unfold((chunks, Some(proc)), |(mut chunks, proc)| async move {
        match chunks.next().await {
            Some(item) => Some((item, (chunks, proc))),
            None => {
                if let Some(p) = proc {
                    let _ = p.join().await;
                }
                None
            }
        }
    });
    Body::from_stream(stream)
}

async fn thumb_file(
    State(st): State<Shared>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !is_thumbnail_name(&file) {
        return text(StatusCode::BAD_REQUEST, "not a thumbnail name");
    }
    let r = match preview::get(&st.ctx, &name).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let path = format!("{}/{file}", thumbs_dir(&r));
    st.serve(&r.rj.spec.storage.claim_name, &path, "image/jpeg", &headers)
        .await
}

#[derive(Clone, Copy)]
enum PreviewFile {
    Video,
    Contact,
}

async fn preview_file(
    st: &Shared,
    name: &str,
    which: PreviewFile,
    headers: &HeaderMap,
) -> Response {
    let r = match preview::get(&st.ctx, name).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Some(p) = r.preview.as_ref().filter(|p| p.ready()) else {
        return text(StatusCode::NOT_FOUND, html::preview_note(&r));
    };
    let (path, content_type) = match which {
        PreviewFile::Video => (p.video.as_deref(), "video/mp4"),
        PreviewFile::Contact => (p.contact_sheet.as_deref(), "image/jpeg"),
    };
    let Some(path) = path.and_then(claim_path) else {
        return text(StatusCode::NOT_FOUND, "status.preview names no such file");
    };
    let path = format!("{MOUNT}/{path}");
    st.serve(&r.rj.spec.storage.claim_name, &path, content_type, headers)
        .await
}

async fn video_file(
    State(st): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    preview_file(&st, &name, PreviewFile::Video, &headers).await
}

async fn contact_file(
    State(st): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    preview_file(&st, &name, PreviewFile::Contact, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_jpeg_names_are_thumbnails() {
        assert!(is_thumbnail_name("frame_0007.jpg"));
        for bad in [
            ".frame_0007.jpg",
            "frame.jpg.tmp",
            "../x.jpg",
            "a/b.jpg",
            "x.png",
            "a b.jpg",
        ] {
            assert!(!is_thumbnail_name(bad), "{bad}");
        }
    }
}
