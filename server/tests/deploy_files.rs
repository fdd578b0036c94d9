//! Drift tests for the deployment files. No Docker engine runs here, so instead of running
//! them, these tests parse `docker-compose.yml` and `heroku.yml` (YAML), the `Dockerfile`
//! (its instructions) and the README's Deploy section, and check every environment
//! variable and port they set against what the server's CLI actually reads — taken from
//! clap's own description of [`Config`], so renaming a flag or an env var without updating
//! the files fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::CommandFactory;
use serde_norway::Value;
use server::config::Config;

// ---------------------------------------------------------------------------------------
// What the CLI reads

/// Every environment variable the server's CLI reads.
fn cli_env_names() -> BTreeSet<String> {
    Config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

/// The CLI's default for the argument read from `env`.
fn cli_default(env: &str) -> String {
    let command = Config::command();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_env().is_some_and(|e| e == env))
        .unwrap_or_else(|| panic!("the CLI reads no {env}"));
    let defaults = arg.get_default_values();
    assert_eq!(defaults.len(), 1, "{env} has one default");
    defaults[0].to_string_lossy().into_owned()
}

#[test]
fn the_cli_reads_the_paas_variables() {
    let names = cli_env_names();
    for required in ["PORT", "MONGODB_URI", "MONGODB_DATABASE", "RUST_LOG"] {
        assert!(names.contains(required), "CLI does not read {required}");
    }
}

// ---------------------------------------------------------------------------------------
// Reading the files

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

fn read(name: &str) -> String {
    let path = repo_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    serde_norway::from_str(&read(name)).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

/// A YAML scalar as the string a container would see.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn get<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        v.get(*key)
            .unwrap_or_else(|| panic!("missing key `{}`", path.join(".")))
    })
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        other => panic!("expected a list or a string, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    get(compose, &["services", name])
}

/// A service's `environment`, in either the map or the `KEY=value` list form.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment is neither a map nor a list: {other:?}"),
    }
}

fn env_value(service: &Value, key: &str) -> Option<String> {
    environment(service)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The container-side ports a service publishes (short `[ip:]host:container[/proto]` or
/// long `{ target, published }` syntax).
fn container_ports(service: &Value) -> Vec<u16> {
    let Some(Value::Sequence(ports)) = service.get("ports") else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|p| match p {
            Value::Mapping(_) => scalar(get(p, &["target"])),
            short => {
                let short = scalar(short);
                let without_proto = short.split('/').next().unwrap_or_default().to_owned();
                without_proto
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            }
        })
        .map(|port| port.parse().unwrap_or_else(|_| panic!("bad port {port:?}")))
        .collect()
}

/// `1m30s`, `30s`, `500ms` → a duration (compose's duration syntax, the parts we use).
fn compose_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_digit() {
                break;
            }
            unit.push(next);
            chars.next();
        }
        let n: u64 = number.parse().expect("a number before each unit");
        number.clear();
        total += match unit.as_str() {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            other => panic!("unknown duration unit {other:?} in {text:?}"),
        };
    }
    assert!(number.is_empty(), "duration {text:?} needs a unit");
    total
}

/// A parsed `mongodb://host:port,…/db?k=v&…` connection string (what the tests need).
struct MongoUri {
    hosts: Vec<(String, u16)>,
    params: Vec<(String, String)>,
}

fn parse_mongo_uri(uri: &str) -> MongoUri {
    let rest = uri
        .strip_prefix("mongodb://")
        .unwrap_or_else(|| panic!("{uri:?} is not a mongodb:// URI"));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let hosts = authority
        .split(',')
        .map(|h| match h.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().expect("numeric port")),
            None => (h.to_owned(), 27017),
        })
        .collect();
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    MongoUri { hosts, params }
}

#[test]
fn compose_server_sets_only_variables_the_cli_reads() {
    let compose = compose();
    let known = cli_env_names();
    let env = environment(service(&compose, "server"));
    assert!(!env.is_empty(), "the server service sets its configuration");
    for (key, _) in &env {
        assert!(
            known.contains(key),
            "docker-compose.yml sets {key}, which the server does not read (it reads {known:?})"
        );
    }
}

#[test]
fn compose_publishes_the_port_the_server_listens_on() {
    let compose = compose();
    let server = service(&compose, "server");
    let port: u16 = env_value(server, "PORT")
        .unwrap_or_else(|| cli_default("PORT"))
        .parse()
        .expect("PORT is a number");
    assert_eq!(
        container_ports(server),
        [port],
        "the published container port is the one PORT makes the server listen on"
    );
    assert!(
        dockerfile_runtime().expose.contains(&port),
        "the Dockerfile EXPOSEs the same port"
    );
}

#[test]
fn compose_mongodb_uri_names_the_healthy_mongo_service() {
    let compose = compose();
    let server = service(&compose, "server");
    let uri = env_value(server, "MONGODB_URI").expect("server gets MONGODB_URI");
    let uri = parse_mongo_uri(&uri);
    assert_eq!(uri.hosts.len(), 1, "one host: the compose service");
    let (host, port) = &uri.hosts[0];

    let mongo = service(&compose, host);
    assert_eq!(
        scalar(get(server, &["depends_on", host, "condition"])),
        "service_healthy",
        "the server starts only once {host} is healthy"
    );
    let check = string_list(get(mongo, &["healthcheck", "test"]));
    assert!(
        check.iter().any(|part| part.contains("mongosh")),
        "{host} has a real healthcheck: {check:?}"
    );

    let command = string_list(get(mongo, &["command"]));
    let flag = |name: &str| {
        command
            .iter()
            .position(|c| c == name)
            .map(|i| command[i + 1].clone())
    };
    let mongod_port: u16 = flag("--port").map_or(27017, |p| p.parse().expect("port"));
    assert_eq!(
        *port, mongod_port,
        "the URI's port is the one mongod listens on"
    );

    let repl_set = flag("--replSet").expect("mongod runs as a replica set");
    let param = uri
        .params
        .iter()
        .find(|(k, _)| k == "replicaSet")
        .map(|(_, v)| v.clone());
    assert_eq!(param.as_deref(), Some(repl_set.as_str()), "URI replicaSet");
    let script = check.last().expect("healthcheck script");
    assert!(
        script.contains(&format!("_id: '{repl_set}'"))
            && script.contains(&format!("host: '{host}:{port}'")),
        "the healthcheck initiates replica set {repl_set} with member {host}:{port}: {script}"
    );

    let database = env_value(server, "MONGODB_DATABASE").expect("database named");
    assert!(!database.is_empty());
}

#[test]
fn compose_keeps_mongo_data_in_a_named_volume() {
    let compose = compose();
    let declared = get(&compose, &["volumes"])
        .as_mapping()
        .expect("top-level volumes is a map");
    let mongo = service(&compose, "mongo");
    let mounts = string_list(get(mongo, &["volumes"]));
    let data = mounts
        .iter()
        .find_map(|m| {
            m.split_once(':')
                .filter(|(_, target)| *target == "/data/db")
        })
        .expect("mongo mounts /data/db");
    assert!(
        declared.contains_key(data.0),
        "{} is a named volume declared at the top level",
        data.0
    );
}

#[test]
fn compose_builds_the_server_from_the_dockerfile() {
    let compose = compose();
    let build = get(service(&compose, "server"), &["build"]);
    let (context, dockerfile) = match build {
        Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
        map => (
            scalar(get(map, &["context"])),
            map.get("dockerfile")
                .map_or_else(|| "Dockerfile".to_owned(), scalar),
        ),
    };
    assert!(repo_root().join(&context).join(&dockerfile).is_file());
}

#[test]
fn compose_stop_grace_outlasts_the_shutdown_drain() {
    let compose = compose();
    let server = service(&compose, "server");
    let drain: u64 = env_value(server, "SHUTDOWN_GRACE_SECS")
        .unwrap_or_else(|| cli_default("SHUTDOWN_GRACE_SECS"))
        .parse()
        .expect("seconds");
    let grace = compose_duration(&scalar(get(server, &["stop_grace_period"])));
    assert!(
        grace > Duration::from_secs(drain),
        "docker stops the container after {grace:?}, before the {drain} s drain ends"
    );
}

// ---------------------------------------------------------------------------------------
// docker-compose.scale.yml and deploy/nginx

/// The `host:port` entries of the `upstream` in `deploy/nginx/default.conf`.
fn nginx_upstream() -> Vec<String> {
    read("deploy/nginx/default.conf")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server "))
        .filter(|rest| !rest.starts_with('{'))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|entry| entry.trim_end_matches(';').to_owned())
        .collect()
}

#[test]
fn compose_scale_runs_distinct_scale_out_instances_that_nginx_balances() {
    let scale = yaml("docker-compose.scale.yml");
    let base = compose();
    let known = cli_env_names();
    let port = env_value(service(&base, "server"), "PORT").expect("the server's PORT");
    assert!(
        env_value(service(&base, "server"), "MONGODB_URI").is_some(),
        "scale-out needs MongoDB"
    );
    let upstream = nginx_upstream();
    let mut ids = BTreeSet::new();
    for name in ["server-1", "server-2"] {
        let instance = service(&scale, name);
        assert_eq!(
            scalar(get(instance, &["extends", "file"])),
            "docker-compose.yml"
        );
        assert_eq!(scalar(get(instance, &["extends", "service"])), "server");
        for (key, _) in environment(instance) {
            assert!(
                known.contains(&key),
                "{name} sets {key}, which the server does not read"
            );
        }
        assert_eq!(
            env_value(instance, "SCALE_OUT").as_deref(),
            Some("true"),
            "{name}"
        );
        ids.insert(env_value(instance, "INSTANCE_ID").expect("an INSTANCE_ID"));
        assert!(
            upstream.contains(&format!("{name}:{port}")),
            "nginx's upstream {upstream:?} lacks {name}:{port}"
        );
    }
    assert_eq!(ids.len(), 2, "each instance has an id of its own");
    assert_eq!(
        upstream.len(),
        2,
        "nginx balances exactly the two instances"
    );
    let listen: u16 = read("deploy/nginx/default.conf")
        .lines()
        .find_map(|line| line.trim().strip_prefix("listen "))
        .and_then(|rest| rest.trim_end_matches(';').parse().ok())
        .expect("nginx listens on a port");
    assert_eq!(container_ports(service(&scale, "balancer")), vec![listen]);
}

// ---------------------------------------------------------------------------------------
// heroku.yml

#[test]
fn heroku_builds_the_dockerfile_for_web() {
    let heroku = yaml("heroku.yml");
    let dockerfile = scalar(get(&heroku, &["build", "docker", "web"]));
    assert!(
        repo_root().join(&dockerfile).is_file(),
        "{dockerfile} exists"
    );
    // Without a `run` section Heroku runs the image's CMD, which is the server.
    if let Some(run) = heroku.get("run") {
        let web = scalar(get(run, &["web"]));
        assert!(web.contains("server"), "run.web starts the server: {web}");
    }
}

#[test]
fn heroku_config_sets_only_cli_variables_and_neither_port_nor_secrets() {
    let heroku = yaml("heroku.yml");
    let known = cli_env_names();
    let Some(config) = heroku.get("setup").and_then(|s| s.get("config")) else {
        return;
    };
    let config = config.as_mapping().expect("setup.config is a map");
    for (key, _) in config {
        let key = scalar(key);
        assert!(
            known.contains(&key),
            "heroku.yml sets {key}, which the server does not read"
        );
        assert_ne!(key, "PORT", "Heroku assigns PORT itself");
        assert_ne!(
            key, "MONGODB_URI",
            "credentials go in `heroku config:set`, not git"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Dockerfile

/// The instructions of the Dockerfile's last (runtime) stage, and the builder's commands.
#[derive(Debug, Default)]
struct Stage {
    from: String,
    env: Vec<(String, String)>,
    expose: Vec<u16>,
    user: Option<String>,
    run: Vec<String>,
}

/// Every stage, in order: instructions with `\` continuations joined, comments skipped.
fn dockerfile_stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        let (keyword, args) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let args = args.trim();
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => stages.push(Stage {
                from: args.to_owned(),
                ..Stage::default()
            }),
            "ENV" => {
                let stage = stages.last_mut().expect("ENV after FROM");
                if args.contains('=') {
                    for pair in args.split_whitespace() {
                        let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                        stage
                            .env
                            .push((k.to_owned(), v.trim_matches('"').to_owned()));
                    }
                } else {
                    let (k, v) = args.split_once(' ').expect("ENV KEY value");
                    stage.env.push((k.to_owned(), v.trim().to_owned()));
                }
            }
            "EXPOSE" => {
                let stage = stages.last_mut().expect("EXPOSE after FROM");
                for port in args.split_whitespace() {
                    let port = port.split('/').next().unwrap_or_default();
                    stage.expose.push(port.parse().expect("EXPOSE a number"));
                }
            }
            "USER" => stages.last_mut().expect("USER after FROM").user = Some(args.to_owned()),
            "RUN" => stages
                .last_mut()
                .expect("RUN after FROM")
                .run
                .push(args.to_owned()),
            _ => {}
        }
    }
    stages
}

fn dockerfile_runtime() -> Stage {
    dockerfile_stages()
        .pop()
        .expect("the Dockerfile has stages")
}

#[test]
fn dockerfile_runtime_sets_only_cli_variables_and_exposes_port() {
    let runtime = dockerfile_runtime();
    let known = cli_env_names();
    for (key, _) in &runtime.env {
        assert!(
            known.contains(key),
            "Dockerfile sets {key}, which the server does not read"
        );
    }
    let port: u16 = runtime
        .env
        .iter()
        .find(|(k, _)| k == "PORT")
        .map_or_else(|| cli_default("PORT"), |(_, v)| v.clone())
        .parse()
        .expect("PORT is a number");
    assert_eq!(
        runtime.expose,
        [port],
        "EXPOSE matches the PORT the server listens on"
    );
}

#[test]
fn dockerfile_runs_slim_as_non_root_and_builds_only_the_server() {
    let stages = dockerfile_stages();
    let runtime = stages.last().expect("stages");
    assert!(
        runtime.from.contains("slim"),
        "runtime image is slim: {}",
        runtime.from
    );
    let user = runtime.user.as_deref().expect("runtime sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(uid, "" | "0" | "root"),
        "runtime user is not root: {user}"
    );

    let builds: Vec<&String> = stages
        .iter()
        .flat_map(|s| &s.run)
        .filter(|r| r.contains("cargo build") || r.contains("cargo chef cook"))
        .collect();
    assert!(
        builds.len() >= 2,
        "a dependency layer and a build: {builds:?}"
    );
    for run in builds {
        let words: Vec<&str> = run.split_whitespace().collect();
        let package = words
            .windows(2)
            .find(|w| w[0] == "--package" || w[0] == "-p")
            .map(|w| w[1]);
        assert_eq!(package, Some("server"), "only the server is built: {run}");
    }
}

// ---------------------------------------------------------------------------------------
// README

/// One row of the env reference table in README's `## Deploy`.
#[derive(Debug)]
struct ReadmeRow {
    variable: String,
    flag: String,
    default: String,
}

/// The rows of the tables in README's `## Deploy` whose first cell is a backticked
/// `UPPER_CASE` name.
fn readme_deploy_rows() -> Vec<ReadmeRow> {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Deploy"))
        .expect("README has a ## Deploy section");
    section
        .lines()
        .filter(|line| line.trim_start().starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let name = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            let is_env = name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_env.then(|| ReadmeRow {
                variable: name.to_owned(),
                flag: cells.get(1).copied().unwrap_or_default().to_owned(),
                default: cells.get(2).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

#[test]
fn readme_documents_exactly_the_variables_the_cli_reads() {
    let rows = readme_deploy_rows();
    let documented: BTreeSet<String> = rows.iter().map(|r| r.variable.clone()).collect();
    assert_eq!(
        documented,
        cli_env_names(),
        "README's Deploy env reference lists every variable the server reads, and no others"
    );
    assert_eq!(
        documented.len(),
        rows.len(),
        "each variable documented once"
    );

    let command = Config::command();
    for row in rows {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == row.variable.as_str()))
            .expect("documented variable is read");
        let long = arg.get_long().expect("every setting has a long flag");
        assert_eq!(row.flag, format!("`--{long}`"), "flag of {}", row.variable);
        match arg.get_default_values() {
            [] => assert_eq!(row.default, "(unset)", "{} has no default", row.variable),
            [default] => {
                let shown = row
                    .default
                    .strip_prefix('`')
                    .and_then(|d| d.split('`').next())
                    .unwrap_or_default();
                assert_eq!(
                    shown,
                    default.to_string_lossy(),
                    "README default of {}",
                    row.variable
                );
            }
            many => panic!("{} has several defaults: {many:?}", row.variable),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The helpers themselves

#[test]
fn helpers_parse_what_they_claim() {
    assert_eq!(compose_duration("1m30s"), Duration::from_secs(90));
    assert_eq!(compose_duration("500ms"), Duration::from_millis(500));
    let uri = parse_mongo_uri("mongodb://u:p@a:1,b/db?replicaSet=rs0&w=majority");
    assert_eq!(uri.hosts, [("a".to_owned(), 1), ("b".to_owned(), 27017)]);
    assert_eq!(uri.params[0], ("replicaSet".to_owned(), "rs0".to_owned()));
    let service: Value = serde_norway::from_str(
        "environment: [A=1, B]\nports: ['127.0.0.1:80:8080/tcp', {target: 9000, published: 1}]",
    )
    .expect("yaml");
    assert_eq!(
        environment(&service),
        [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), String::new())
        ]
    );
    assert_eq!(container_ports(&service), [8080, 9000]);
}
