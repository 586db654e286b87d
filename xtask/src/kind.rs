//! `cargo xtask kind`: the deploy/ manifests on a real (kind) cluster with
//! kube-proxy disabled, so every Service that answers is answered by the
//! agent. Builds the image, creates the cluster, deploys, checks a ClusterIP
//! from a pod, a NodePort from the host and an Ingress, and deletes the
//! cluster again, on failure too.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::shell::{check, step, workspace_root};

/// Also the prefix of kind's node containers (`ebpf-lb-control-plane`).
const CLUSTER: &str = "ebpf-lb";
/// The tag deploy/daemonset.yaml runs; `kind load` puts it on every node.
const IMAGE: &str = "ebpf-lb:dev";
/// deploy/kind/echo.yaml's Service and Ingress.
const NODE_PORT: u16 = 30080;
const INGRESS_HOST: &str = "echo.example";
const INGRESS_PORT: u16 = 80;
/// agnhost netexec answers this path with the pod's name.
const ECHO_PATH: &str = "/hostname";
const ECHO_POD_PREFIX: &str = "echo-";
const CURL_IMAGE: &str = "curlimages/curl:8.11.1";
const ROLLOUT_TIMEOUT: &str = "--timeout=300s";
const README_SECTION: &str = "README.md, \"Installing into a cluster\", \"`cargo xtask kind`\"";

pub fn run() -> anyhow::Result<()> {
    preflight()?;
    let root = workspace_root();
    if kind_clusters()?.iter().any(|c| c == CLUSTER) {
        bail!(
            "a kind cluster named {CLUSTER} already exists; this command creates and deletes its own. \
             Delete it with `kind delete cluster --name {CLUSTER}` and run it again"
        );
    }

    step(&format!(
        "building the image {IMAGE} (deploy/Dockerfile; the first build takes a while)"
    ));
    check(
        Command::new("docker")
            .args(["build", "-f", "deploy/Dockerfile", "-t", IMAGE, "."])
            .current_dir(&root),
        "docker build",
    )?;

    let cluster = Cluster {
        kubeconfig: root
            .join("target")
            .join(format!("kind-{CLUSTER}.kubeconfig")),
        root,
    };
    step(&format!(
        "creating the kind cluster {CLUSTER} without kube-proxy (deploy/kind/cluster.yaml)"
    ));
    // Armed before creating: a half-created cluster is deleted too.
    let _teardown = Teardown { cluster: &cluster };
    check(
        Command::new("kind")
            .args([
                "create",
                "cluster",
                "--name",
                CLUSTER,
                "--config",
                "deploy/kind/cluster.yaml",
                "--kubeconfig",
            ])
            .arg(&cluster.kubeconfig)
            .current_dir(&cluster.root),
        "kind create cluster",
    )?;
    let result = deploy_and_check(&cluster);
    if result.is_err() {
        cluster.diagnose();
    }
    result
}

fn preflight() -> anyhow::Result<()> {
    let tools = [
        (
            "docker",
            &["info"][..],
            "docker with a running daemon (`docker info` failed)",
        ),
        ("kind", &["version"][..], "kind (`kind version` failed)"),
        (
            "kubectl",
            &["version", "--client"][..],
            "kubectl (`kubectl version --client` failed)",
        ),
    ];
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(program, args, _)| {
            !Command::new(program)
                .args(*args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, _, what)| *what)
        .collect();
    if !missing.is_empty() {
        bail!(
            "cargo xtask kind runs a kind cluster in containers and needs:\n  - {}\n\
             Nothing was created. Install what is missing (see {README_SECTION}) and run it again.",
            missing.join("\n  - ")
        );
    }
    Ok(())
}

fn kind_clusters() -> anyhow::Result<Vec<String>> {
    let output = Command::new("kind")
        .args(["get", "clusters"])
        .output()
        .context("running kind get clusters")?;
    if !output.status.success() {
        bail!(
            "kind get clusters failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

struct Cluster {
    root: PathBuf,
    /// Its own file, so the user's ~/.kube/config is left alone.
    kubeconfig: PathBuf,
}

impl Cluster {
    fn kubectl(&self) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(&self.root);
        command
    }

    fn kubectl_ok(&self, args: &[&str], what: &str) -> anyhow::Result<()> {
        check(self.kubectl().args(args), what)
    }

    /// The nodes' addresses on kind's docker network, by node name.
    fn node_ips(&self) -> anyhow::Result<Vec<(String, IpAddr)>> {
        let nodes = capture(
            Command::new("kind").args(["get", "nodes", "--name", CLUSTER]),
            "kind get nodes",
        )?;
        nodes
            .lines()
            .map(|node| {
                let ip = capture(
                    Command::new("docker").args([
                        "inspect",
                        "-f",
                        "{{ (index .NetworkSettings.Networks \"kind\").IPAddress }}",
                        node,
                    ]),
                    "docker inspect",
                )?;
                let ip = ip
                    .trim()
                    .parse()
                    .with_context(|| format!("node {node}'s address {ip:?}"))?;
                Ok((node.to_owned(), ip))
            })
            .collect()
    }

    /// What a failed run leaves to read before the cluster is deleted.
    fn diagnose(&self) {
        step("diagnostics before teardown");
        let _ = self
            .kubectl()
            .args(["get", "pods", "-A", "-o", "wide"])
            .status();
        let _ = self
            .kubectl()
            .args([
                "-n",
                "ebpf-lb",
                "logs",
                "daemonset/ebpf-lb",
                "--all-containers",
                "--tail=100",
            ])
            .status();
    }
}

/// Deletes the cluster when `run` returns, whether it succeeded or not.
struct Teardown<'a> {
    cluster: &'a Cluster,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        step(&format!("deleting the kind cluster {CLUSTER}"));
        let deleted = Command::new("kind")
            .args(["delete", "cluster", "--name", CLUSTER, "--kubeconfig"])
            .arg(&self.cluster.kubeconfig)
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!(
                "xtask: deleting the cluster failed; run `kind delete cluster --name {CLUSTER}`"
            );
        }
        let _ = std::fs::remove_file(&self.cluster.kubeconfig);
    }
}

fn deploy_and_check(cluster: &Cluster) -> anyhow::Result<()> {
    step(&format!("loading {IMAGE} onto the nodes"));
    check(
        Command::new("kind").args(["load", "docker-image", IMAGE, "--name", CLUSTER]),
        "kind load docker-image",
    )?;

    let nodes = cluster.node_ips()?;
    let control_plane = nodes
        .iter()
        .find(|(name, _)| name.ends_with("-control-plane"))
        .map(|(_, ip)| *ip)
        .context("kind listed no control-plane node")?;

    step("deploying deploy/ (namespace first, then the API server's address, then the rest)");
    cluster.kubectl_ok(
        &["apply", "-f", "deploy/namespace.yaml"],
        "kubectl apply deploy/namespace.yaml",
    )?;
    // Without kube-proxy nothing translates the `kubernetes` ClusterIP until
    // the agent runs, so the agent itself must reach the API server directly.
    cluster.kubectl_ok(
        &[
            "-n",
            "ebpf-lb",
            "create",
            "configmap",
            "ebpf-lb-apiserver",
            &format!("--from-literal=KUBERNETES_SERVICE_HOST={control_plane}"),
            "--from-literal=KUBERNETES_SERVICE_PORT=6443",
        ],
        "kubectl create configmap ebpf-lb-apiserver",
    )?;
    cluster.kubectl_ok(&["apply", "-k", "deploy/"], "kubectl apply -k deploy/")?;
    step("waiting for the agent on every node");
    cluster.kubectl_ok(
        &[
            "-n",
            "ebpf-lb",
            "rollout",
            "status",
            "daemonset/ebpf-lb",
            ROLLOUT_TIMEOUT,
        ],
        "the ebpf-lb DaemonSet rollout",
    )?;
    // CoreDNS reaches the API server through the `kubernetes` ClusterIP: it
    // only becomes ready once the agent serves that Service.
    cluster.kubectl_ok(
        &[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            ROLLOUT_TIMEOUT,
        ],
        "CoreDNS becoming ready (it needs the kubernetes ClusterIP, which only the agent serves)",
    )?;

    step("deploying the echo workload (deploy/kind/echo.yaml)");
    cluster.kubectl_ok(
        &["apply", "-f", "deploy/kind/echo.yaml"],
        "kubectl apply deploy/kind/echo.yaml",
    )?;
    cluster.kubectl_ok(
        &["rollout", "status", "deployment/echo", ROLLOUT_TIMEOUT],
        "the echo Deployment rollout",
    )?;

    step("ClusterIP from a pod: curl http://echo/hostname (cluster DNS, then the echo Service)");
    let url = format!("http://echo{ECHO_PATH}");
    let output = capture(
        cluster.kubectl().args([
            "run",
            "curl",
            "--rm",
            "-i",
            "--quiet",
            "--restart=Never",
            "--pod-running-timeout=3m",
            &format!("--image={CURL_IMAGE}"),
            "--command",
            "--",
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--retry",
            "10",
            "--retry-all-errors",
            "--retry-delay",
            "2",
            &url,
        ]),
        "the ClusterIP check (kubectl run curl)",
    )?;
    let answer = echo_answer(&output)
        .with_context(|| format!("the ClusterIP check: {url} answered {output:?}"))?;
    println!("    ClusterIP: {url} answered by {answer}");

    for (node, ip) in &nodes {
        step(&format!(
            "NodePort from the host: {ip}:{NODE_PORT} ({node})"
        ));
        let answer = eventually(|| http_get(SocketAddr::new(*ip, NODE_PORT), None))
            .with_context(|| format!("the NodePort check on {node} ({ip}:{NODE_PORT})"))?;
        println!("    NodePort: {ip}:{NODE_PORT} answered by {answer}");
    }

    for (node, ip) in &nodes {
        step(&format!(
            "Ingress: {ip}:{INGRESS_PORT} with Host: {INGRESS_HOST} ({node})"
        ));
        let answer =
            eventually(|| http_get(SocketAddr::new(*ip, INGRESS_PORT), Some(INGRESS_HOST)))
                .with_context(|| {
                    format!(
                        "the Ingress check on {node} ({ip}:{INGRESS_PORT}, Host {INGRESS_HOST})"
                    )
                })?;
        println!("    Ingress: {INGRESS_HOST} via {ip}:{INGRESS_PORT} answered by {answer}");
    }
    step("all checks passed");
    Ok(())
}

fn capture(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("{what}: could not start"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The echo pod's name, when the text is an echo pod's answer.
fn echo_answer(text: &str) -> anyhow::Result<String> {
    let name = text.trim();
    if !name.starts_with(ECHO_POD_PREFIX) || name.contains(char::is_whitespace) {
        bail!("expected the name of an echo pod ({ECHO_POD_PREFIX}...)");
    }
    Ok(name.to_owned())
}

/// The agent programs a new Service within moments of seeing it, but not
/// before the check starts: retry for a minute, keeping the last error.
fn eventually(mut attempt: impl FnMut() -> anyhow::Result<String>) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match attempt() {
            Ok(answer) => return Ok(answer),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context("still failing after 60 s"));
            }
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// GET ECHO_PATH over HTTP/1.0 (so the answer is never chunked) and return
/// the answering pod's name.
fn http_get(address: SocketAddr, host: Option<&str>) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let host = host
        .map(str::to_owned)
        .unwrap_or_else(|| address.to_string());
    write!(stream, "GET {ECHO_PATH} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer from {address}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{address} answered {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{address} answered {status:?}");
    }
    echo_answer(body).with_context(|| format!("{address} answered {body:?}"))
}
