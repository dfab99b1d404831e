//! The `plantgate` command: parses the command line, sets up logging, runs a subcommand and
//! turns its outcome into an exit code (0 ok, 78 configuration error, 1 anything else; `probe`
//! and the spool commands have their own, documented in their help and `app::spool_cmd`).
//! Owns nothing else: every subcommand's work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plantgate::app::check::Verdict;
use plantgate::config::{Config, ConfigError};

/// sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus stops a restart loop on it.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "plantgate",
    version,
    about = "Edge gateway for gas-detection and fire alarm controllers: polls Modbus RTU/TCP, keeps every reading on disk, forwards over MQTT with mutual TLS.",
    after_help = "Start with `plantgate demo` to see it work, then copy config/plantgate.example.toml to /etc/plantgate/plantgate.toml, edit it, and check it with `plantgate check-config`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/plantgate/plantgate.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and print a summary; exits 78 and lists every problem if it is wrong.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/plantgate/plantgate.toml")]
        config: PathBuf,
        /// Treat missing certificate files as errors (what the service runs before it starts).
        #[arg(long)]
        strict: bool,
    },
    /// Internal: check a spool file's every page, in a child process (exit 0 clean, 3 damaged, 4 in use).
    #[command(hide = true, name = "spool-check")]
    SpoolCheck { file: PathBuf },
    /// Internal: dump one table of a possibly damaged spool file, in a child process.
    #[command(hide = true, name = "spool-dump")]
    SpoolDump {
        file: PathBuf,
        #[arg(long, value_enum)]
        table: plantgate::spool::scan::Table,
        #[arg(long)]
        backward: bool,
        #[arg(long)]
        from: Option<u64>,
    },
    /// Read a bus now, for the installer: each configured point once, or which unit ids answer.
    ///
    /// With --config, every configured point of the devices is read once and shown decoded, with
    /// its quality, raw registers and each request's time. With --port PATH --scan or --tcp
    /// HOST:PORT --scan, unit ids (and with --baud auto, baud and parity) are searched, and a
    /// [[bus]]/[[device]] snippet is printed for what answered. Never touches the spool or the
    /// uplink, never writes to a device.
    Probe(plantgate::app::probe::ProbeArgs),
    /// Look inside the spool without changing it: stats, export, verify (refused while the service runs).
    Spool {
        #[command(subcommand)]
        cmd: plantgate::app::spool_cmd::SpoolCmd,
    },
    /// Internal: read a spool file read-only for `plantgate spool`, in a child process.
    #[command(hide = true, name = "spool-read")]
    SpoolRead {
        file: PathBuf,
        #[arg(long, value_enum)]
        mode: plantgate::spool::forensics::Mode,
        #[arg(long, default_value = "")]
        gw: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Run a self-contained demo: simulated controllers, embedded broker with mutual TLS, the gateway.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        seconds: Option<u64>,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, strict } => check_config(&config, strict),
        Command::SpoolCheck { file } => spool_check(&file),
        Command::SpoolDump {
            file,
            table,
            backward,
            from,
        } => {
            let mut out = std::io::stdout().lock();
            match plantgate::spool::scan::dump(&file, table, backward, from, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Spool { cmd } => {
            let exe = std::env::current_exe().unwrap_or_else(|_| "plantgate".into());
            ExitCode::from(plantgate::app::spool_cmd::run(cmd, &exe))
        }
        Command::SpoolRead {
            file,
            mode,
            gw,
            from,
        } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            ExitCode::from(plantgate::spool::forensics::child::serve(
                &file, mode, &gw, from, &mut out,
            ))
        }
        Command::Run { config } => {
            init_logging("info,rumqttd=warn");
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            run_async(plantgate::app::run(config))
        }
        Command::Probe(args) => {
            init_logging("warn");
            probe(args)
        }
        Command::Demo { seconds } => {
            init_logging("warn,rumqttd=off");
            run_async(plantgate::app::demo::run(seconds))
        }
    }
}

/// The runtime, or the exit code after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(f);
    // A write stuck on a hung disk must not keep the process: give blocking threads a moment.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let config_problem = e.chain().any(|c| {
                c.is::<ConfigError>()
                    || c.is::<plantgate::uplink::tls::TlsError>()
                    || c.is::<plantgate::app::ConfigCaused>()
            });
            if config_problem {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn check_config(path: &std::path::Path, strict: bool) -> ExitCode {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match plantgate::app::check::check_config(path, strict, &mut out, &mut err) {
        Ok(Verdict::Usable) => ExitCode::SUCCESS,
        Ok(Verdict::Refused) => ExitCode::from(EXIT_CONFIG),
        Err(e) => {
            eprintln!("error: cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `probe`: its exit code is its own (see its `--help`).
fn probe(args: plantgate::app::probe::ProbeArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    ExitCode::from(rt.block_on(plantgate::app::probe::run(args, &mut out, &mut err)))
}

/// `spool-check`: the handshake on stdout, then redb's integrity check; the verdict is the
/// exit code (and a damaged file's detail on stderr).
fn spool_check(file: &std::path::Path) -> ExitCode {
    use plantgate::spool::{salvage, scan};
    println!("{}", salvage::HANDSHAKE);
    match scan::check(file) {
        scan::Health::Clean => ExitCode::from(salvage::CHECK_CLEAN),
        scan::Health::Locked => ExitCode::from(salvage::CHECK_LOCKED),
        scan::Health::Damaged(d) => {
            eprintln!("{d}");
            ExitCode::from(salvage::CHECK_DAMAGED)
        }
    }
}
