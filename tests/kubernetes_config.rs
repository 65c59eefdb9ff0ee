//! deploy/kubernetes/ fits the binary it deploys, without a cluster or the network: the
//! configuration inside the ConfigMap validates (`Config::from_yaml`, what `--check` runs
//! before loading TLS files), and the Deployment agrees with it — ports, probe paths, the
//! writable paths, the shutdown arithmetic, CPU and memory against `threads` and
//! `limits.max_connections` — and with its Services, PodDisruptionBudget and the MI headless
//! Service example. `scripts/check-kubernetes.sh` (run by `.ci/run`) adds the Kubernetes
//! schemas and `healthgate --check` itself.

use healthgate::config::Config;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// Seconds the runtimes get to stop after `shutdown.grace_period` (`src/server.rs`,
/// `SHUTDOWN_TIMEOUT_SECONDS`; the README's "at the latest 5 s later").
const RUNTIME_STOP: u64 = 5;
/// RSS per idle keep-alive client connection (docs/bench/hot-path.md, 35.59 KiB).
const BYTES_PER_CONNECTION: u64 = 35_590;
/// Peak RSS probing 5000 nodes, rounded up (docs/bench/health-cost.md: 62.4 MiB, start-up
/// and scrapes included); the base of ~21 MiB is inside it.
const PEAK_AT_5000_NODES: u64 = 64 << 20;

/// Every document of a manifest file.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file))
        .unwrap_or_else(|e| panic!("{DIR}/{file}: {e}"));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The one document of `kind` named `name` in `file`.
fn object(file: &str, kind: &str, name: &str) -> Value {
    documents(file)
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{file}: no {kind} named {name}"))
}

fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value}"))
}

fn number(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, found {value}"))
}

fn array<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {value}"))
}

/// The configuration inside the ConfigMap, validated.
fn config() -> Config {
    let map = object("configmap.yaml", "ConfigMap", "healthgate-config");
    let text = string(&map["data"]["healthgate.yaml"], "data.healthgate.yaml");
    Config::from_yaml("configmap.yaml:data.healthgate.yaml", text)
        .unwrap_or_else(|e| panic!("the ConfigMap's configuration: {e}"))
}

fn deployment() -> Value {
    object("deployment.yaml", "Deployment", "healthgate")
}

/// The healthgate container of the Deployment.
fn container(deployment: &Value) -> &Value {
    array(
        &deployment["spec"]["template"]["spec"]["containers"],
        "containers",
    )
    .iter()
    .find(|c| c["name"] == "healthgate")
    .expect("a container named healthgate")
}

/// The container port named `name`.
fn container_port(container: &Value, name: &str) -> u16 {
    let port = array(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    number(&port["containerPort"], name) as u16
}

/// Kubernetes quantities as used here: `250m`, `2`; `64Mi`, `256Mi`, `1Gi`.
fn cores(quantity: &str) -> f64 {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("millicores") / 1000.0,
        None => quantity.parse().expect("cores"),
    }
}

fn bytes(quantity: &str) -> u64 {
    for (suffix, unit) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().expect("a whole quantity") * unit;
        }
    }
    quantity.parse().expect("bytes")
}

/// Every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
}

#[test]
fn the_configmap_holds_a_valid_configuration_that_discovers_mi() {
    let config = config();
    assert!(
        !config.discovery.is_empty(),
        "the ConfigMap should discover MI's pods through DNS"
    );
    assert!(
        config.admin.ip().is_unspecified(),
        "the kubelet and Prometheus reach the admin listener over the pod network, so it \
         must listen on all interfaces, not {}",
        config.admin
    );
    assert!(
        config.admin_token.is_none(),
        "a token in a ConfigMap is a secret in plain sight: ship the file as a Secret instead"
    );
}

#[test]
fn the_deployment_serves_the_configured_ports_and_probes_the_admin_endpoints() {
    let config = config();
    let deployment = deployment();
    let container = container(&deployment);
    let [listen] = &config.listen[..] else {
        panic!(
            "one traffic listener expected, found {}",
            config.listen.len()
        );
    };
    assert_eq!(container_port(container, "http"), listen.address.port());
    assert_eq!(container_port(container, "admin"), config.admin.port());

    for (probe, path) in [
        ("readinessProbe", "/healthz"),
        ("livenessProbe", "/liveness"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(string(&get["path"], probe), path, "{probe}");
        assert_eq!(string(&get["port"], probe), "admin", "{probe}");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        config.admin.port().to_string()
    );

    // The configuration file is the ConfigMap's key, mounted where --config points.
    let args: Vec<&str> = array(&container["args"], "args")
        .iter()
        .map(|a| string(a, "args"))
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let file = Path::new(args[at + 1]);
    let mount = array(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| Path::new(string(&m["mountPath"], "mountPath")) == file.parent().unwrap())
        .expect("a volume mounted where --config points");
    let volume = array(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    )
    .iter()
    .find(|v| v["name"] == mount["name"])
    .expect("the mounted volume");
    assert_eq!(volume["configMap"]["name"], "healthgate-config");
    assert_eq!(file.file_name().unwrap(), "healthgate.yaml");
}

#[test]
fn termination_grace_covers_the_pre_stop_pause_and_the_shutdown() {
    let config = config();
    let deployment = deployment();
    let container = container(&deployment);
    let command: Vec<&str> = array(
        &container["lifecycle"]["preStop"]["exec"]["command"],
        "preStop",
    )
    .iter()
    .map(|a| string(a, "preStop"))
    .collect();
    let ["sleep", seconds] = command[..] else {
        panic!("preStop should be a plain sleep, found {command:?}");
    };
    let pre_stop: u64 = seconds.parse().expect("preStop sleep seconds");
    assert!(
        pre_stop >= 3,
        "preStop {pre_stop} s: kube-proxy and Ingress controllers need a few seconds to drop the pod"
    );
    let grace = config.shutdown.grace_period.as_secs_f64().ceil() as u64;
    let termination = number(
        &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    // SIGTERM comes after preStop; the process then exits at the latest grace + 5 s later.
    let needed = pre_stop + grace + RUNTIME_STOP;
    assert!(
        termination > needed,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + \
         grace_period {grace} + {RUNTIME_STOP} (runtime stop) = {needed}, with a margin"
    );
    assert!(
        termination <= needed + 15,
        "terminationGracePeriodSeconds {termination}: far more than {needed} only slows \
         down a stuck pod's end"
    );
    let strategy = &deployment["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        strategy["maxUnavailable"], 0,
        "a rollout must never drop a ready replica first"
    );
    assert!(number(&strategy["maxSurge"], "maxSurge") >= 1);
}

#[test]
fn the_pod_is_locked_down_and_writes_only_to_its_empty_dir() {
    let config = config();
    let deployment = deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = container(&deployment);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["runAsUser"], 10001,
        "the Dockerfile's user"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // The root filesystem is read-only: every path healthgate writes must be on an emptyDir.
    let writable: Vec<&str> = array(&container["volumeMounts"], "volumeMounts")
        .iter()
        .filter(|m| {
            array(&pod["volumes"], "volumes")
                .iter()
                .any(|v| v["name"] == m["name"] && v.get("emptyDir").is_some())
        })
        .map(|m| string(&m["mountPath"], "mountPath"))
        .collect();
    let mut written: Vec<&Path> = vec![Path::new(&config.upgrade_socket)];
    written.extend(config.drain_file.as_deref());
    for path in written {
        assert!(
            writable.iter().any(|dir| path.starts_with(dir)),
            "{} is not on a writable volume (emptyDir mounts: {writable:?})",
            path.display()
        );
    }
}

#[test]
fn resources_fit_the_threads_and_the_connection_limit() {
    let config = config();
    let deployment = deployment();
    let resources = &container(&deployment)["resources"];
    let cpu_limit = cores(string(&resources["limits"]["cpu"], "limits.cpu"));
    assert!(
        config.threads as f64 <= cpu_limit,
        "threads {} > CPU limit {cpu_limit}: the workers would be throttled",
        config.threads
    );
    let memory = bytes(string(&resources["limits"]["memory"], "limits.memory"));
    let connections = config.limits.max_connections.expect(
        "limits.max_connections set: without it a connection flood outgrows the memory limit",
    ) as u64;
    let listeners = config.listen.len() as u64;
    let needed = PEAK_AT_5000_NODES + listeners * connections * BYTES_PER_CONNECTION;
    assert!(
        needed <= memory,
        "memory limit {memory} B < {needed} B: {connections} connections × \
         {BYTES_PER_CONNECTION} B + {PEAK_AT_5000_NODES} B"
    );
    let request = bytes(string(&resources["requests"]["memory"], "requests.memory"));
    assert!(
        request >= 32 << 20,
        "a memory request under the idle footprint (~21 MiB) + some connections"
    );
}

#[test]
fn services_and_the_disruption_budget_select_the_healthgate_pods() {
    let config = config();
    let deployment = deployment();
    let template = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        template
    ));
    let container = container(&deployment);

    let traffic = object("service.yaml", "Service", "healthgate");
    let admin = object("service.yaml", "Service", "healthgate-admin");
    for (service, port_name, port) in [
        (&traffic, "http", config.listen[0].address.port()),
        (&admin, "admin", config.admin.port()),
    ] {
        assert!(
            selects(&service["spec"]["selector"], template),
            "{}",
            service["metadata"]["name"]
        );
        let [p] = &array(&service["spec"]["ports"], "ports")[..] else {
            panic!("one port per Service");
        };
        assert_eq!(p["targetPort"], port_name);
        assert_eq!(container_port(container, port_name), port);
        assert_eq!(number(&p["port"], "port"), u64::from(port));
    }
    assert_eq!(
        admin["spec"]["publishNotReadyAddresses"], true,
        "a replica with no ready MI node is the one to look at"
    );

    let pdb = object("pdb.yaml", "PodDisruptionBudget", "healthgate");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], template));
    let replicas = number(&deployment["spec"]["replicas"], "replicas");
    let min_available = number(&pdb["spec"]["minAvailable"], "minAvailable");
    assert!(
        replicas >= 2 && min_available < replicas,
        "minAvailable {min_available} with {replicas} replicas would block every node drain"
    );

    let monitor = object("servicemonitor.yaml", "ServiceMonitor", "healthgate");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &admin["metadata"]["labels"]
    ));
    assert!(!selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &traffic["metadata"]["labels"]
    ));
}

#[test]
fn the_mi_headless_service_is_the_one_discovered_and_lists_every_pod() {
    let config = config();
    let service = object("mi-headless-service.yaml", "Service", "mi-headless");
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "headless: one A record per pod"
    );
    assert_eq!(
        service["spec"]["publishNotReadyAddresses"], true,
        "healthgate must see a pod whose MI /healthz fails (docs/kubernetes.md)"
    );
    let name = format!(
        "{}.{}.svc.",
        string(&service["metadata"]["name"], "name"),
        string(&service["metadata"]["namespace"], "namespace")
    );
    let discovered = config
        .discovery
        .iter()
        .find(|d| d.dns.starts_with(&name))
        .unwrap_or_else(|| panic!("no discovery entry for {name}…"));
    let ports: Vec<u64> = array(&service["spec"]["ports"], "ports")
        .iter()
        .map(|p| number(&p["port"], "port"))
        .collect();
    for port in [discovered.traffic_port, discovered.health_port] {
        assert!(
            ports.contains(&u64::from(port)),
            "{port} not among {ports:?}"
        );
    }
    // The readiness arithmetic docs/kubernetes.md states: out on every replica within
    // period × failure_threshold (3 s with the defaults).
    assert_eq!(config.readiness.period, Duration::from_secs(1));
    assert_eq!(config.readiness.failure_threshold, 3);
    assert_eq!(config.liveness.period, Duration::from_secs(5));
}
