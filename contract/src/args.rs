//! `render-node`'s command line: parsed by `render-node`, built by the operator.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::frames::FrameSet;

/// Where `render-node` writes its termination message by default (read by the kubelet).
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// The environment variable that sets [`RenderArgs::wait_isolated`]. The operator sets it on
/// the batch pods of namespaces whose NetworkPolicy isolates them: a variable, not a flag, so
/// that an image older than it (a RenderJob's `spec.image`) still starts.
pub const WAIT_ISOLATED_ENV: &str = "RENDER_NODE_WAIT_ISOLATED";

/// What `render-node` connects to, to learn that its pod's NetworkPolicy is in force: an
/// address the policy blocks, which answers where nothing blocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationProbe {
    /// `api-server`: the API server's Service, from `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`, which the kubelet sets in every container.
    ApiServer,
    /// `IP:PORT` (`[IPv6]:PORT`). No names: resolving one could itself be what is blocked.
    Addr(SocketAddr),
}

impl IsolationProbe {
    /// The value that names the API server's Service.
    pub const API_SERVER: &'static str = "api-server";
}

impl FromStr for IsolationProbe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Self::API_SERVER {
            return Ok(IsolationProbe::ApiServer);
        }
        s.parse().map(IsolationProbe::Addr).map_err(|_| {
            format!(
                "{s:?} is neither {} nor an address IP:PORT",
                Self::API_SERVER
            )
        })
    }
}

impl fmt::Display for IsolationProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsolationProbe::ApiServer => f.write_str(Self::API_SERVER),
            IsolationProbe::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// Blender render engine (`blender -E`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum Engine {
    /// Path tracer; the only engine that can render on a GPU backend here.
    #[default]
    #[serde(rename = "CYCLES")]
    #[value(name = "CYCLES")]
    Cycles,
    /// Rasterizer; needs OpenGL/EGL, falls back to software rendering headless.
    #[serde(rename = "BLENDER_EEVEE")]
    #[value(name = "BLENDER_EEVEE")]
    BlenderEevee,
    /// Fast viewport-style previews.
    #[serde(rename = "BLENDER_WORKBENCH")]
    #[value(name = "BLENDER_WORKBENCH")]
    BlenderWorkbench,
}

/// Compute device for Cycles (`blender -- --cycles-device`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum Device {
    #[default]
    #[serde(rename = "CPU")]
    #[value(name = "CPU")]
    Cpu,
    /// NVIDIA CUDA.
    #[serde(rename = "CUDA")]
    #[value(name = "CUDA")]
    Cuda,
    /// NVIDIA OptiX (RTX).
    #[serde(rename = "OPTIX")]
    #[value(name = "OPTIX")]
    Optix,
    /// AMD HIP.
    #[serde(rename = "HIP")]
    #[value(name = "HIP")]
    Hip,
}

impl Device {
    pub fn is_gpu(self) -> bool {
        self != Device::Cpu
    }

    /// The name Blender uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "CPU",
            Device::Cuda => "CUDA",
            Device::Optix => "OPTIX",
            Device::Hip => "HIP",
        }
    }
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Cycles => "CYCLES",
            Engine::BlenderEevee => "BLENDER_EEVEE",
            Engine::BlenderWorkbench => "BLENDER_WORKBENCH",
        }
    }
}

/// What to do when the scene uses external files (images, linked libraries, movie clips, fonts,
/// volumes, caches) that are not readable where it renders.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum MissingFiles {
    /// Bad input (exit 64) before the first frame, listing them.
    #[default]
    #[serde(rename = "Fail")]
    #[value(name = "fail")]
    Fail,
    /// Render anyway (Blender draws a missing image magenta, a missing library's objects not
    /// at all) and list them in the termination message.
    #[serde(rename = "Warn")]
    #[value(name = "warn")]
    Warn,
}

impl MissingFiles {
    /// The value of `--missing-files`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingFiles::Fail => "fail",
            MissingFiles::Warn => "warn",
        }
    }
}

/// What a frame of one flat colour does to the batch. A fade to black is one, so by default it
/// is only a warning.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum BlankFrames {
    /// A warning event and a line in the termination message.
    #[default]
    #[serde(rename = "Warn")]
    #[value(name = "warn")]
    Warn,
    /// The frame fails its check like a truncated one: rendered once more, then the batch
    /// fails as `BadFrame`.
    #[serde(rename = "Fail")]
    #[value(name = "fail")]
    Fail,
}

impl BlankFrames {
    /// The value of `--blank-frames`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlankFrames::Warn => "warn",
            BlankFrames::Fail => "fail",
        }
    }
}

/// Output image format (`blender -F`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum OutputFormat {
    #[default]
    #[serde(rename = "PNG")]
    #[value(name = "PNG")]
    Png,
    #[serde(rename = "JPEG")]
    #[value(name = "JPEG")]
    Jpeg,
    #[serde(rename = "OPEN_EXR")]
    #[value(name = "OPEN_EXR")]
    OpenExr,
    #[serde(rename = "OPEN_EXR_MULTILAYER")]
    #[value(name = "OPEN_EXR_MULTILAYER")]
    OpenExrMultilayer,
    #[serde(rename = "TIFF")]
    #[value(name = "TIFF")]
    Tiff,
    #[serde(rename = "BMP")]
    #[value(name = "BMP")]
    Bmp,
    #[serde(rename = "TARGA")]
    #[value(name = "TARGA")]
    Targa,
    #[serde(rename = "WEBP")]
    #[value(name = "WEBP")]
    Webp,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Png => "PNG",
            OutputFormat::Jpeg => "JPEG",
            OutputFormat::OpenExr => "OPEN_EXR",
            OutputFormat::OpenExrMultilayer => "OPEN_EXR_MULTILAYER",
            OutputFormat::Tiff => "TIFF",
            OutputFormat::Bmp => "BMP",
            OutputFormat::Targa => "TARGA",
            OutputFormat::Webp => "WEBP",
        }
    }

    /// The extension Blender appends to the file name.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => ".png",
            OutputFormat::Jpeg => ".jpg",
            OutputFormat::OpenExr | OutputFormat::OpenExrMultilayer => ".exr",
            OutputFormat::Tiff => ".tif",
            OutputFormat::Bmp => ".bmp",
            OutputFormat::Targa => ".tga",
            OutputFormat::Webp => ".webp",
        }
    }
}

/// The file Blender writes for `frame` given the output pattern, following Blender's rule: the
/// last run of `#` in the file name becomes the zero-padded frame number (four digits appended
/// when there is none), then the format's extension unless the name already ends with it.
pub fn output_file(pattern: &str, frame: i32, format: OutputFormat) -> String {
    let (dir, name) = match pattern.rfind('/') {
        Some(i) => pattern.split_at(i + 1),
        None => ("", pattern),
    };
    let mut name = name.to_string();
    let digits = |width: usize| {
        if frame < 0 {
            format!(
                "-{:0width$}",
                frame.unsigned_abs(),
                width = width.saturating_sub(1)
            )
        } else {
            format!("{frame:0width$}")
        }
    };
    match name.rfind('#') {
        Some(last) => {
            let first = name[..=last].trim_end_matches('#').len();
            let width = last + 1 - first;
            name.replace_range(first..=last, &digits(width));
        }
        None => name.push_str(&digits(4)),
    }
    let ext = format.extension();
    if !name.to_ascii_lowercase().ends_with(ext) {
        name.push_str(ext);
    }
    format!("{dir}{name}")
}

/// `--termination-log` as given in `argv`, for when the command line as a whole does not parse
/// (`render-node` and `render-preview` still leave a termination message saying why).
pub fn termination_log_from(argv: &[String]) -> PathBuf {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--termination-log" {
            if let Some(v) = it.next() {
                return PathBuf::from(v);
            }
        } else if let Some(v) = a.strip_prefix("--termination-log=") {
            return PathBuf::from(v);
        }
    }
    PathBuf::from(DEFAULT_TERMINATION_LOG)
}

/// The first line of a command-line error, without clap's `error: `.
pub fn error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

/// Render one batch of frames of a .blend file, skipping frames already on disk, and verify
/// every output file.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "render-node", version, about, long_about = None)]
pub struct RenderArgs {
    /// The .blend file to render.
    #[arg(long, value_name = "PATH")]
    pub blend_file: PathBuf,

    /// Frames to render: `START..END`, `START..END:STEP`, a list `1,3,7`, or one frame.
    #[arg(long, value_name = "FRAMES")]
    pub frames: FrameSet,

    /// Output path pattern; the last run of `#` in the file name becomes the frame number
    /// (four digits are appended when there is none), and the format's extension is added.
    #[arg(long, value_name = "PATTERN")]
    pub output: String,

    /// Output image format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,

    /// Render engine.
    #[arg(long, value_enum, default_value_t)]
    pub engine: Engine,

    /// Cycles compute device. A GPU device that is not present is bad input unless
    /// `--allow-cpu-fallback` is given.
    #[arg(long, value_enum, default_value_t)]
    pub device: Device,

    /// Render on the CPU when the requested GPU device is not present, instead of failing.
    #[arg(long)]
    pub allow_cpu_fallback: bool,

    /// Render threads (0: one per CPU Blender sees).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,

    /// Render every frame, even those already on disk.
    #[arg(long)]
    pub overwrite: bool,

    /// External files the scene uses that are not readable: `fail` (bad input) or `warn`
    /// (render anyway); either way the termination message lists them.
    #[arg(long, value_enum, default_value_t)]
    pub missing_files: MissingFiles,

    /// The scene of the .blend file to render (default: the one the file has active). A name
    /// the file does not have is bad input, listing those it has.
    #[arg(long, value_name = "NAME")]
    pub scene: Option<String>,

    /// The camera object to render through (default: the scene's camera, or the one its
    /// timeline markers bind at each frame).
    #[arg(long, value_name = "NAME")]
    pub camera: Option<String>,

    /// A view layer to render (repeatable; default: those the file marks for rendering).
    #[arg(long = "view-layer", value_name = "NAME")]
    pub view_layers: Vec<String>,

    /// A frame of one flat colour: `warn` (a warning) or `fail` (the frame fails its check).
    #[arg(long, value_enum, default_value_t)]
    pub blank_frames: BlankFrames,

    /// Do not keep the scene's data (BVH, textures) between the frames of the batch
    /// (Blender's persistent data, on by default for batches of more than one frame).
    #[arg(long)]
    pub no_persistent_data: bool,

    /// Where to write the JSON termination message.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TERMINATION_LOG)]
    pub termination_log: PathBuf,

    /// The Blender executable.
    #[arg(
        long,
        value_name = "PATH",
        env = "RENDER_NODE_BLENDER",
        default_value = "blender"
    )]
    pub blender: PathBuf,

    /// The version of that Blender (`4.5.15`), set by the image; a .blend file saved by a newer
    /// Blender is refused before Blender starts. Unset: asked from `blender --version`.
    #[arg(long, value_name = "VERSION", env = "RENDER_NODE_BLENDER_VERSION")]
    pub blender_version: Option<String>,

    /// This batch's name in the start-ahead handoff: while it renders it keeps the marker
    /// `.renderfarm/NAME` beside its frames alive, and marks it done once Blender has
    /// finished, for a batch started ahead of time to take over its place.
    #[arg(long, value_name = "NAME")]
    pub marker: Option<String>,

    /// Start Blender and load the scene, then wait to render until the batch whose marker is
    /// NAME is done (or its marker stops being kept alive): started ahead of time, this batch
    /// renders in that batch's place, never beside it.
    #[arg(long, value_name = "NAME")]
    pub after: Option<String>,

    /// Listen on TCP PORT once the first frame is saved (taking no connection: the kernel
    /// completes the handshake). The operator's startup probe dials it, so the pod turns Ready
    /// when the scene is seen to render, and the time that took tells the operator when the
    /// batch will end long before it does.
    #[arg(long, value_name = "PORT")]
    pub ready_port: Option<u16>,

    /// Before Blender starts, wait until a TCP connection to ADDR is blocked: the pod's
    /// NetworkPolicy is then in force (a network plugin may learn a new pod's address only
    /// after its container started). ADDR is IP:PORT, or `api-server` for the API server's
    /// Service; it must be an address the policy blocks. At most 10 s: past that, Blender
    /// starts and the termination message says isolation was not confirmed. Set by the
    /// operator through the environment only ([`RenderArgs::to_args`] leaves it out).
    #[arg(long, value_name = "ADDR", env = WAIT_ISOLATED_ENV)]
    pub wait_isolated: Option<IsolationProbe>,
}

impl RenderArgs {
    /// A batch with defaults for everything but what every batch must say.
    pub fn new(
        blend_file: impl Into<PathBuf>,
        frames: FrameSet,
        output: impl Into<String>,
    ) -> Self {
        RenderArgs {
            blend_file: blend_file.into(),
            frames,
            output: output.into(),
            format: OutputFormat::default(),
            engine: Engine::default(),
            device: Device::default(),
            allow_cpu_fallback: false,
            threads: 0,
            overwrite: false,
            missing_files: MissingFiles::default(),
            scene: None,
            camera: None,
            view_layers: Vec::new(),
            blank_frames: BlankFrames::default(),
            no_persistent_data: false,
            termination_log: PathBuf::from(DEFAULT_TERMINATION_LOG),
            blender: PathBuf::from("blender"),
            blender_version: None,
            marker: None,
            after: None,
            ready_port: None,
            wait_isolated: None,
        }
    }

    /// The command-line arguments (without the program name) that parse back into `self`.
    /// Defaults that belong to the image (Blender's path and version, the termination log) are
    /// left out, and so are flags at their default, so that an older image still takes them.
    /// `wait_isolated` is left out too: the operator sets it as [`WAIT_ISOLATED_ENV`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--blend-file".to_string(),
            self.blend_file.display().to_string(),
            "--frames".to_string(),
            self.frames.to_string(),
            "--output".to_string(),
            self.output.clone(),
            "--format".to_string(),
            self.format.as_str().to_string(),
            "--engine".to_string(),
            self.engine.as_str().to_string(),
            "--device".to_string(),
            self.device.as_str().to_string(),
        ];
        if self.allow_cpu_fallback {
            args.push("--allow-cpu-fallback".to_string());
        }
        if self.threads != 0 {
            args.extend(["--threads".to_string(), self.threads.to_string()]);
        }
        if self.overwrite {
            args.push("--overwrite".to_string());
        }
        if self.missing_files != MissingFiles::default() {
            args.extend([
                "--missing-files".to_string(),
                self.missing_files.as_str().to_string(),
            ]);
        }
        self.push_selection(&mut args);
        for (flag, value) in [("--marker", &self.marker), ("--after", &self.after)] {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.clone()]);
            }
        }
        if let Some(port) = self.ready_port {
            args.extend(["--ready-port".to_string(), port.to_string()]);
        }
        if self.termination_log.as_os_str() != DEFAULT_TERMINATION_LOG {
            args.extend([
                "--termination-log".to_string(),
                self.termination_log.display().to_string(),
            ]);
        }
        if self.blender.as_os_str() != "blender" {
            args.extend(["--blender".to_string(), self.blender.display().to_string()]);
        }
        if let Some(v) = &self.blender_version {
            args.extend(["--blender-version".to_string(), v.clone()]);
        }
        args
    }

    /// What to render and how to check it, each flag only when not at its default (an older
    /// image refuses flags it does not know).
    fn push_selection(&self, args: &mut Vec<String>) {
        for (flag, value) in [("--scene", &self.scene), ("--camera", &self.camera)] {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.clone()]);
            }
        }
        for layer in &self.view_layers {
            args.extend(["--view-layer".to_string(), layer.clone()]);
        }
        if self.blank_frames != BlankFrames::default() {
            args.extend([
                "--blank-frames".to_string(),
                self.blank_frames.as_str().to_string(),
            ]);
        }
        if self.no_persistent_data {
            args.push("--no-persistent-data".to_string());
        }
    }

    /// Parse arguments as built by [`RenderArgs::to_args`] (no program name).
    pub fn try_parse_from_args(args: &[String]) -> Result<Self, clap::Error> {
        Self::try_parse_from(std::iter::once("render-node").chain(args.iter().map(String::as_str)))
    }

    /// The file expected on disk for `frame`.
    pub fn output_file(&self, frame: i32) -> String {
        output_file(&self.output, frame, self.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn termination_log_is_found_in_a_bad_command_line() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            termination_log_from(&argv("rn --frames x --termination-log /t/log")),
            PathBuf::from("/t/log")
        );
        assert_eq!(
            termination_log_from(&argv("rn --termination-log=/t/l2 --bogus")),
            PathBuf::from("/t/l2")
        );
        assert_eq!(
            termination_log_from(&argv("rn --bogus")),
            PathBuf::from(DEFAULT_TERMINATION_LOG)
        );
    }

    #[test]
    fn output_file_follows_blenders_rule() {
        assert_eq!(
            output_file("/out/f_####", 7, OutputFormat::Png),
            "/out/f_0007.png"
        );
        assert_eq!(
            output_file("/out/f_##", 123, OutputFormat::Png),
            "/out/f_123.png"
        );
        assert_eq!(
            output_file("/out/frame", 3, OutputFormat::Jpeg),
            "/out/frame0003.jpg"
        );
        assert_eq!(
            output_file("/out/a##b####", 5, OutputFormat::OpenExr),
            "/out/a##b0005.exr"
        );
        assert_eq!(
            output_file("/o#/x_###.png", 9, OutputFormat::Png),
            "/o#/x_009.png"
        );
        assert_eq!(
            output_file("/out/n_####", -3, OutputFormat::Tiff),
            "/out/n_-003.tif"
        );
    }

    #[test]
    fn help_parses_and_names_every_flag() {
        use clap::CommandFactory;
        RenderArgs::command().debug_assert();
        let help = RenderArgs::command().render_long_help().to_string();
        for flag in [
            "--blend-file",
            "--frames",
            "--output",
            "--format",
            "--engine",
            "--device",
            "--overwrite",
            "--missing-files",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    fn any_args() -> impl Strategy<Value = RenderArgs> {
        (
            (1i32..5000, 0i32..50, 1u32..4),
            prop::sample::select(OutputFormat::value_variants().to_vec()),
            prop::sample::select(Engine::value_variants().to_vec()),
            prop::sample::select(Device::value_variants().to_vec()),
            (any::<bool>(), 0u32..64, any::<bool>()),
            "[a-z/_#]{1,30}",
            prop::sample::select(MissingFiles::value_variants().to_vec()),
            (
                prop::option::of("[a-z0-9][a-z0-9-]{0,39}"),
                prop::option::of("[a-z0-9][a-z0-9-]{0,39}"),
                prop::option::of(any::<u16>()),
            ),
            (
                prop::option::of("[A-Za-z][A-Za-z0-9 ._-]{0,20}"),
                prop::option::of("[A-Za-z][A-Za-z0-9 ._-]{0,20}"),
                prop::collection::vec("[A-Za-z][A-Za-z0-9 ._-]{0,20}", 0..3),
                prop::sample::select(BlankFrames::value_variants().to_vec()),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (start, len, step),
                    format,
                    engine,
                    device,
                    (fallback, threads, overwrite),
                    out,
                    missing_files,
                    (marker, after, ready_port),
                    (scene, camera, view_layers, blank_frames, no_persistent_data),
                )| {
                    let mut a = RenderArgs::new(
                        "/data/scene.blend",
                        FrameSet::Range {
                            start,
                            end: start + len,
                            step,
                        },
                        format!("/data/{out}"),
                    );
                    a.format = format;
                    a.engine = engine;
                    a.device = device;
                    a.allow_cpu_fallback = fallback;
                    a.threads = threads;
                    a.overwrite = overwrite;
                    a.missing_files = missing_files;
                    a.marker = marker;
                    a.after = after;
                    a.ready_port = ready_port;
                    a.scene = scene;
                    a.camera = camera;
                    a.view_layers = view_layers;
                    a.blank_frames = blank_frames;
                    a.no_persistent_data = no_persistent_data;
                    a
                },
            )
    }

    #[test]
    fn default_flags_are_left_out_for_older_images() {
        let a = RenderArgs::new("/d/s.blend", FrameSet::List(vec![1]), "/d/o/f_####");
        let args = a.to_args();
        assert!(!args.iter().any(|x| x == "--missing-files"), "{args:?}");
        let mut warn = a.clone();
        warn.missing_files = MissingFiles::Warn;
        let args = warn.to_args();
        let at = args.iter().position(|x| x == "--missing-files");
        assert_eq!(at.map(|i| args[i + 1].as_str()), Some("warn"));
    }

    #[test]
    fn isolation_probes_parse_and_print_back() {
        for text in ["api-server", "10.96.0.1:443", "[fd00::1]:6443"] {
            let probe: IsolationProbe = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(probe.to_string(), text);
        }
        assert_eq!("api-server".parse(), Ok(IsolationProbe::ApiServer));
        for bad in [
            "",
            "10.96.0.1",
            "kubernetes.default:443",
            "fd00::1:443",
            "api-server:443",
        ] {
            assert!(bad.parse::<IsolationProbe>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn wait_isolated_is_a_flag_but_never_built_into_one() {
        let base = [
            "rn",
            "--blend-file",
            "/d/s.blend",
            "--frames",
            "1",
            "--output",
            "/d/f",
        ];
        let mut argv = base.to_vec();
        argv.extend(["--wait-isolated", "api-server"]);
        let parsed = RenderArgs::try_parse_from(argv).expect("parses");
        assert_eq!(parsed.wait_isolated, Some(IsolationProbe::ApiServer));
        // An older image would refuse the flag: the operator sets the variable instead.
        assert!(!parsed.to_args().iter().any(|a| a.contains("isolat")));
        let help = <RenderArgs as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains(WAIT_ISOLATED_ENV), "{help}");
    }

    proptest! {
        #[test]
        fn to_args_parses_back(args in any_args()) {
            let mut argv = vec!["render-node".to_string()];
            argv.extend(args.to_args());
            let parsed = RenderArgs::try_parse_from(argv).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.frames.frames(), args.frames.frames());
            let mut parsed = parsed;
            parsed.frames = args.frames.clone();
            prop_assert_eq!(parsed, args);
        }
    }
}
