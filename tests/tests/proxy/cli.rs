//! The proxy as `portctl` users meet it: `portctl url`, `{url@NAME}` in
//! `run` and `env`, `status`; the proxy port from the flag, the variable
//! and the config file; a daemon whose proxy port is taken still serving
//! leases and saying why; a proxy turned off.

use portd_e2e::cli::portctl;
use portd_e2e::{Done, finish, portd_command};

use super::*;

/// `portctl ARGS` for `d`, run in `dir` (its project).
fn portctl_in(d: &TestDaemon, dir: &Path, args: &[&str]) -> Done {
    let mut cmd = portctl(d.socket());
    cmd.current_dir(dir).args(args);
    Done {
        what: format!("portctl {}", args.join(" ")),
        ..finish(&mut cmd, DEADLINE)
    }
}

#[test]
fn url_prints_a_names_url_and_run_and_env_expand_url_placeholders() {
    let p = Proxied::start();
    let shop = p.project("shop");
    p.lease(0, "api", &shop);
    let url = format!("http://api.shop.localhost:{}/", p.proxy_port());

    let printed = portctl_in(&p.d, &shop, &["url", "api"]);
    assert_eq!(printed.expect(0).stdout, format!("{url}\n"));
    let json = portctl_in(&p.d, &shop, &["url", "api", "--json"]);
    let body = json.expect(0).json();
    assert_eq!(body["url"], url);
    assert_eq!(body["label"], "shop");
    assert_eq!(body["port"], p.block.port(0));
    // The same as the API's own body.
    let project = shop.to_str().unwrap().replace('/', "%2F");
    let api = p.d.get(&format!("/v1/url?project={project}&name=api"));
    assert_eq!(
        serde_json::from_str::<Value>(json.stdout.trim()).unwrap(),
        api.json()
    );

    let unknown = portctl_in(&p.d, &shop, &["url", "db"]);
    unknown.expect(4);
    assert!(unknown.stderr.contains("no name 'db'"), "{unknown}");

    // run: in the command's arguments and its environment.
    let out = p.scratch.path("run-out");
    let script = format!("printf '%s %s' \"$API\" \"$1\" > {}", out.display());
    portctl_in(
        &p.d,
        &shop,
        &[
            "run",
            "--name",
            "web",
            "--env",
            "API={url@api}v1",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "{url@api}",
        ],
    )
    .expect(0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{url}v1 {url}")
    );

    // env: beside PORT, in both formats that take it.
    let dotenv = portctl_in(
        &p.d,
        &shop,
        &[
            "env",
            "--name",
            "api",
            "--format",
            "dotenv",
            "--env",
            "API_URL={url@api}",
        ],
    );
    assert_eq!(
        dotenv.expect(0).stdout,
        format!("PORT={}\nAPI_URL={url}\n", p.block.port(0))
    );
    let shell = portctl_in(
        &p.d,
        &shop,
        &["env", "--name", "api", "--env", "A=x {port}"],
    );
    assert!(
        shell
            .expect(0)
            .stdout
            .ends_with(&format!("export A='x {}'\n", p.block.port(0))),
        "{shell}"
    );
    let missing = portctl_in(
        &p.d,
        &shop,
        &["env", "--name", "api", "--env", "B={url@db}"],
    );
    assert_eq!(
        missing.expect(4).stdout,
        "(exit 4)\n",
        "eval must fail: {missing}"
    );
}

#[test]
fn status_shows_where_the_proxy_listens_and_a_taken_port_leaves_leases_served_and_says_why() {
    let p = Proxied::start();
    let port = p.proxy_port();
    let status = p.d.get("/v1/status").json();
    assert_eq!(status["proxy"]["port"], port);
    let listening = status["proxy"]["listening"].to_string();
    assert!(listening.contains(&format!("127.0.0.1:{port}")), "{status}");
    let text = portctl_in(&p.d, Path::new("/tmp"), &["status"]);
    assert!(
        text.expect(0).stdout.contains(&format!(
            "proxy:         http://NAME.PROJECT.localhost:{port}/ on 127.0.0.1:{port}"
        )),
        "{text}"
    );

    // A second daemon told to use the same port: it serves leases anyway.
    let block = PortBlock::reserve();
    let mut second = TestDaemon::new(block.range());
    second.args(&["--proxy-port", &port.to_string()]);
    second.launch();
    let owner = ChildGuard::sleep(60);
    let leased = second.post(
        "/v1/leases",
        &json!({"port": block.port(3), "owner": owner.owner()}),
    );
    assert_eq!(leased.status, 201, "{}", leased.body);
    let status = second.get("/v1/status").json();
    let error = status["proxy"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{port}: the port is in use"))
            && error.contains("proxy_port"),
        "{status}"
    );
    assert_eq!(status["proxy"]["listening"], json!([]));
    let text = portctl_in(&second, Path::new("/tmp"), &["status"]);
    assert!(
        text.expect(0).stdout.contains(&format!(
            "proxy:         not listening on port {port}: cannot listen"
        )),
        "{text}"
    );
    assert!(
        second.log().contains("the .localhost proxy is off"),
        "the log says why"
    );
}

#[test]
fn the_proxy_port_comes_from_the_flag_then_the_variable_then_the_config_file() {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    std::fs::create_dir_all(d.config_file().parent().unwrap()).unwrap();
    std::fs::write(d.config_file(), "proxy_port = 7400\n").unwrap();
    let printed = |cmd: &mut std::process::Command| -> String {
        let done = finish(cmd.arg("--print-config"), DEADLINE);
        let line = done
            .expect(0)
            .stdout
            .lines()
            .find(|l| l.starts_with("proxy_port = "))
            .unwrap_or_else(|| panic!("no proxy_port line: {done}"))
            .to_string();
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let command = || portd_command(d.socket(), d.db(), block.range());
    let file = printed(command().env_remove("PORTD_PROXY_PORT"));
    assert!(file.starts_with("proxy_port = 7400 # file "), "{file}");
    let env = printed(command().env("PORTD_PROXY_PORT", "7401"));
    assert_eq!(env, "proxy_port = 7401 # env PORTD_PROXY_PORT");
    let flag = printed(
        command()
            .env("PORTD_PROXY_PORT", "7401")
            .args(["--proxy-port", "7402"]),
    );
    assert_eq!(flag, "proxy_port = 7402 # flag");
    let bad = finish(command().env("PORTD_PROXY_PORT", "web"), DEADLINE);
    assert!(
        !bad.status.success() && bad.stderr.contains("PORTD_PROXY_PORT"),
        "{bad}"
    );
}

#[test]
fn with_the_proxy_off_url_says_so_and_nothing_listens() {
    let block = PortBlock::reserve();
    // The harness turns the proxy off unless a test gives it a port.
    let d = TestDaemon::start(block.range());
    let project = Scratch::new();
    let owner = ChildGuard::sleep(60);
    let leased = d.post(
        "/v1/leases",
        &json!({"port": block.port(0), "name": "api", "project": project.path("").to_str().unwrap(),
                "owner": owner.owner()}),
    );
    assert_eq!(leased.status, 201, "{}", leased.body);
    let status = d.get("/v1/status").json();
    assert_eq!(
        status["proxy"],
        json!({"port": 0, "listening": [], "error": null})
    );
    let url = portctl_in(&d, &project.path(""), &["url", "api"]);
    url.expect(4);
    assert!(url.stderr.contains("proxy is off"), "{url}");
}
