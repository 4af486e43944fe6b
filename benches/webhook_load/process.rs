//! The servers under test as child processes: `attestgate serve` (the release build cargo made
//! for this bench) and the floor (this binary re-run as `__floor`), with their memory read from
//! `/proc/PID/status` and the peak reset through `/proc/PID/clear_refs`.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A field of `/proc/PID/status` in kB (`VmHWM`, `VmRSS`).
pub(crate) fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user and system) the process has used, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0).
pub(crate) fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// MiB with one decimal, from kB.
pub(crate) fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// `attestgate serve` running on a config, killed when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) webhook: SocketAddr,
}

impl Served {
    /// Starts `attestgate serve --config DIR/config.yaml`, its log in `DIR/server.log`, and
    /// waits for its `serving` line.
    pub(crate) fn start(dir: &Path, config: &str) -> Self {
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config).expect("config");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        // BENCH_SERVER_WRAPPER runs the server under a profiler (`perf record -g -o FILE`,
        // `heaptrack -o FILE`); the memory figures are then the wrapper's.
        let wrapper = std::env::var("BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(env!("CARGO_BIN_EXE_attestgate"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_attestgate")),
        };
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "RUST_LOG",
        ] {
            command.env_remove(var);
        }
        let mut child = command.spawn().expect("attestgate serve starts");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(webhook) = text.lines().find_map(serving_address) {
                return Self { child, webhook };
            }
            if started.elapsed() > Duration::from_secs(30)
                || child.try_wait().ok().flatten().is_some()
            {
                child.kill().ok();
                panic!("attestgate serve did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self) -> String {
        format!("https://{}/validate/enforce", self.webhook)
    }

    pub(crate) fn base(&self) -> String {
        format!("https://{}", self.webhook)
    }
}

impl Drop for Served {
    /// SIGTERM (the server drains and exits; a profiler wrapping it writes its data), then
    /// SIGKILL after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn serving_address(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &value["fields"];
    if fields["message"] != "serving" {
        return None;
    }
    fields["webhook"].as_str()?.parse().ok()
}

/// The floor server, killed when dropped.
pub(crate) struct Floor {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Floor {
    /// Runs this binary as `__floor DIR/tls.crt DIR/tls.key` and reads its address.
    pub(crate) fn start(tls_dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("__floor")
            .arg(tls_dir.join("tls.crt"))
            .arg(tls_dir.join("tls.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("floor starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("floor address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("floor said {line:?}"));
        Self { child, addr }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self) -> String {
        format!("https://{}/validate/enforce", self.addr)
    }

    pub(crate) fn base(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
