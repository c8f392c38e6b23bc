use super::*;
use std::io::Write;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.path().join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        Config::parse(&self.0.path().join("replguard.toml"), text)
    }
}

const ONE: &str =
    "[[instance]]\nname = \"db1\"\nport = 3307\nuser = \"u\"\npassword_file = \"pw\"\n";

#[test]
fn minimal_config_gets_defaults() {
    let d = Dir::new();
    d.file("pw", "s3cret\n", 0o600);
    let c = d.parse(ONE).unwrap();
    assert_eq!(c.listen, "127.0.0.1:31337".parse().unwrap());
    assert_eq!(
        (c.interval, c.timeout, c.max_sample_age),
        (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_MAX_SAMPLE_AGE)
    );
    let i = &c.instances[0];
    assert_eq!(i.policy, "auto");
    assert_eq!(i.port, Some(3307));
    assert_eq!(i.target.password.expose(), "s3cret");
    assert_eq!(format!("{:?}", i.target.password), "\"***\"");
}

#[test]
fn full_example_parses() {
    let d = Dir::new();
    d.file("pw", "x", 0o400);
    std::fs::create_dir(d.0.path().join("pol")).unwrap();
    d.file(
        "pol/lenient.toml",
        "checks = [\"sample\", \"lag\"]\nmax_lag = \"60s\"\n",
        0o644,
    );
    let c = d
        .parse(
            r#"
listen = "0.0.0.0:31337"
interval = "2s"
timeout = "1s"
max_sample_age = "5s"
policies_dir = "pol"

[[instance]]
name = "db201"
host = "10.0.0.1"
port = 3306
user = "replguard"
password_file = "pw"
policy = "lenient"
max_lag = "5s"

[[instance]]
name = "db202"
socket = "/run/mysqld/mysqld2.sock"
port = 3307
user = "replguard"
password_file = "pw"
"#,
        )
        .unwrap();
    assert_eq!(c.instances.len(), 2);
    assert_eq!(
        c.instances[0].thresholds.max_lag,
        Some(Duration::from_secs(5))
    );
    assert!(c.policies.get("lenient").is_some());
    assert_eq!(
        c.instances[1].target.addr,
        Addr::Socket("/run/mysqld/mysqld2.sock".into())
    );
    assert_eq!(c.instances[1].port, Some(3307));
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    let d = Dir::new();
    d.file("pw", "hunter2\n", 0o600);
    d.file("open", "hunter2\n", 0o644);
    d.file("group", "hunter2\n", 0o640);
    d.file("empty", "", 0o600);
    d.file("gw", "hunter2\n", 0o620);
    d.file("ow", "hunter2\n", 0o602);
    let two = |a: &str, b: &str| {
        format!("[[instance]]\nname = \"a\"\nuser = \"u\"\n{a}\n[[instance]]\nname = \"b\"\nuser = \"u\"\n{b}\n")
    };
    #[rustfmt::skip]
    let cases: Vec<(String, &str, &str)> = vec![
        // An unknown key is named by the message only: the line's text is echoed only for
        // keys replguard knows (a file that is no config at all must not be quoted).
        (format!("colour = \"blue\"\n{ONE}"), "", "unknown field `colour`"),
        ("hunter2 pass = x\n".to_string(), "", "expected `=`"),
        (format!("interval = \"2ns\"\n{ONE}"), "interval", "is outside 10ms..3600s"),
        (format!("interval = \"2h\"\n{ONE}"), "interval", "is outside 10ms..3600s"),
        (format!("interval = \"200000000000y\"\n{ONE}"), "interval", "longer than the largest accepted (366 days)"),
        (format!("interval = \"2000y\"\n{ONE}"), "interval", "longer than the largest accepted"),
        (format!("{ONE}max_source_lost = \"2000y\"\n"), "max_source_lost", "longer than the largest accepted"),
        (format!("interval = \"100ms\"\ntimeout = \"500us\"\nmax_sample_age = \"1s\"\n{ONE}"), "timeout", "is shorter than 1ms"),
        (format!("{ONE}ssl_mode = \"SOMETIMES\"\n"), "instance[db1].ssl_mode", "must be DISABLED, PREFERRED"),
        (format!("{ONE}ssl_mode = \"VERIFY_CA\"\n"), "instance[db1].ssl_ca", "need ssl_ca"),
        (format!("{ONE}ssl_mode = \"REQUIRED\"\nssl_cert = \"pw\"\n"), "instance[db1].ssl_key", "ssl_cert needs its ssl_key"),
        (format!("{ONE}ssl_mode = \"REQUIRED\"\nssl_cert = \"pw\"\nssl_key = \"open\"\n"), "instance[db1].ssl_key", "readable by group or others"),
        (format!("{ONE}ssl_ca = \"missing.crt\"\n"), "instance[db1].ssl_ca", "cannot read"),
        (format!("{ONE}[web]\nallow_from = [\"10.1.2.3/8\"]\n"), "web.allow_from", "has host bits set; write 10.0.0.0/8"),
        (format!("check_from = [\"10.1.2.3/8\"]\n{ONE}"), "check_from", "has host bits set; write 10.0.0.0/8"),
        (format!("check_from = [\"haproxy\"]\n{ONE}"), "check_from", "is not a CIDR"),
        (format!("max_connections_per_client = 0\n{ONE}"), "max_connections_per_client", "must be between 1 and 65536"),
        (format!("{ONE}[web]\nbasic_auth_users = {{ m = \"$2b$20$abcdefghijklmnopqrstuuPLe4Mmw0N9OxGh2JRCo3V0a1NXnbB4e\" }}\n"), "web.basic_auth_users", "not a bcrypt hash"),
        (format!("{ONE}[web]\ntls_client_auth = \"require\"\n"), "web.tls_cert_file", "client certificates need TLS"),
        (ONE.replace("\"pw\"", "\"gw\""), "instance[db1].password_file", "writable by group or others (mode 0620)"),
        (ONE.replace("\"pw\"", "\"ow\""), "instance[db1].password_file", "writable by group or others (mode 0602)"),
        (format!("interval = \"1x\"\n{ONE}"), "interval", "invalid duration"),
        (format!("interval = \"5\"\n{ONE}"), "interval", "has no unit"),
        (format!("interval = \"1s\"\ntimeout = \"1s\"\n{ONE}"), "timeout", "must be shorter than interval"),
        (format!("max_sample_age = \"1s\"\n{ONE}"), "max_sample_age", "must be longer than interval"),
        (format!("listen = \"localhost\"\n{ONE}"), "listen", "not an IP:port"),
        ("interval = \"1s\"\n".to_string(), "instance", "no [[instance]]"),
        (two("port = 1", "port = 2").replace("name = \"b\"", "name = \"a\""), "instance[a].name", "duplicate instance name"),
        (two("port = 1", "port = 1"), "instance[b].port", "port 1 is used by another instance"),
        (ONE.replace("3307", "3307\npassword = \"hunter2\""), "", "unknown field `password`"),
        (ONE.replace("\"pw\"", "\"open\""), "instance[db1].password_file", "readable by group or others (mode 0644)"),
        (ONE.replace("\"pw\"", "\"group\""), "instance[db1].password_file", "readable by group or others (mode 0640)"),
        (ONE.replace("\"pw\"", "\"missing\""), "instance[db1].password_file", "cannot read"),
        (ONE.replace("\"pw\"", "\"empty\""), "instance[db1].password_file", "is empty"),
        (format!("{ONE}policy = \"nope\"\n"), "instance[db1].policy", "no policy named \"nope\""),
        (format!("{ONE}max_lag = \"-1s\"\n"), "max_lag", "is negative"),
        (format!("{ONE}socket = \"/s\"\nhost = \"h\"\n"), "instance[db1].socket", "either socket or host"),
        (ONE.replace("db1", "db 1"), "instance[db 1].name", "letters, digits"),
        (ONE.replace("user = \"u\"\n", ""), "instance[db1].user", "missing"),
    ];
    for (text, key, msg) in cases {
        let e = d.parse(&text).expect_err(&text);
        assert_eq!(e.key, key, "{text}\n=> {e}");
        assert!(e.message.contains(msg), "{text}\n=> {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&d.0.path().join("replguard.toml").display().to_string()),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "password leaked: {shown}");
    }
}

#[test]
fn option_file_supplies_credentials() {
    let d = Dir::new();
    d.file(
        "my.cnf",
        "[mysqld]\nport = 1\n[client]\nuser = guard\npassword = \"p w#1\" \nport=3310\nssl-mode = DISABLED\n",
        0o600,
    );
    let c = d
        .parse("[[instance]]\nname = \"x\"\ndefaults_file = \"my.cnf\"\n")
        .unwrap();
    let i = &c.instances[0];
    assert_eq!(i.target.user, "guard");
    assert_eq!(i.target.password.expose(), "p w#1");
    assert_eq!(i.port, Some(3310));
    // The instance's own keys win over the option file's.
    let c = d
        .parse("[[instance]]\nname = \"x\"\nuser = \"other\"\nport = 4000\ndefaults_file = \"my.cnf\"\n")
        .unwrap();
    assert_eq!(
        (c.instances[0].target.user.as_str(), c.instances[0].port),
        ("other", Some(4000))
    );
    d.file("open.cnf", "[client]\npassword=hunter2\n", 0o644);
    let e = d
        .parse("[[instance]]\nname = \"x\"\nuser = \"u\"\ndefaults_file = \"open.cnf\"\n")
        .unwrap_err();
    assert_eq!(e.key, "instance[x].defaults_file");
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn deploy_example_config_is_valid() {
    let d = Dir::new();
    let pw = d.file("db201.password", "x", 0o600);
    let state = d.0.path().join("state");
    let text = include_str!("../../deploy/replguard.toml")
        .replace("/etc/replguard/db201.password", pw.to_str().unwrap())
        .replace("/var/lib/replguard", state.to_str().unwrap());
    let c = d.parse(&text).expect("deploy/replguard.toml parses");
    assert_eq!(c.instances[0].name, "db201");
    assert_eq!(
        c.instances[0].thresholds.max_lag,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn option_file_parsing() {
    let cases: &[(&str, ClientOptions)] = &[
        (
            "[client]\nuser=a\n",
            ClientOptions {
                user: Some("a".into()),
                ..Default::default()
            },
        ),
        ("[mysql]\nuser=a\n", ClientOptions::default()),
        (
            "[client]\npassword='x y'\n# c\n; c\n",
            ClientOptions {
                password: Some("x y".into()),
                ..Default::default()
            },
        ),
        (
            "[client]\nuser = b # comment\nsocket=/tmp/s\n",
            ClientOptions {
                user: Some("b".into()),
                socket: Some("/tmp/s".into()),
                ..Default::default()
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&parse_option_file(text).unwrap(), want, "{text:?}");
    }
    assert!(parse_option_file("!include /etc/x\n").is_err());
    assert!(parse_option_file("[client]\nport=abc\n").is_err());
}

#[test]
fn a_state_dir_that_cannot_be_used_is_named_with_the_user() {
    let d = Dir::new();
    d.file("pw", "s3cret\n", 0o600);
    d.file("taken", "not a directory\n", 0o600);
    let user = current_user();
    assert!(user.contains("uid "), "{user}");
    for (dir, want) in [
        ("taken", "is not a directory"),
        ("taken/state", "cannot create"),
    ] {
        let e = d
            .parse(&format!("state_dir = \"{dir}\"\n{ONE}"))
            .expect_err(dir);
        let text = e.to_string();
        assert_eq!(e.key, "state_dir");
        assert!(text.contains(want) && text.contains(dir), "{text}");
        assert!(
            text.contains(&format!("replguard runs as {user}")),
            "{text}"
        );
    }
    let ok = d.parse(&format!("state_dir = \"state\"\n{ONE}")).unwrap();
    let meta = std::fs::metadata(ok.state_dir.unwrap()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::read_dir(d.0.path().join("state")).unwrap().count(),
        0,
        "the write test leaves nothing behind"
    );
}

#[test]
fn coordination_is_checked_without_contacting_etcd() {
    let d = Dir::new();
    d.file("pw", "x", 0o600);
    let with = |coordination: &str, instance: &str| {
        d.parse(&format!(
            "[coordination]\n{coordination}\n[[instance]]\nname = \"db201\"\nport = 3306\n\
             user = \"u\"\npassword_file = \"pw\"\n{instance}"
        ))
    };
    let c = with(
        "etcd_endpoints = [\"http://10.0.0.11:2379\", \"http://10.0.0.12:2379\"]\nguard_name = \"g1\"",
        "writer_group = \"mysql-m0\"\nwriter_preferred = true\n",
    )
    .unwrap();
    let co = c.coordination.as_ref().unwrap();
    assert_eq!(
        (co.prefix.as_str(), co.lease_ttl, co.handover_delay),
        (
            coordination::DEFAULT_PREFIX,
            coordination::DEFAULT_LEASE_TTL,
            coordination::DEFAULT_HANDOVER_DELAY
        )
    );
    assert_eq!(co.writer_key("mysql-m0"), "/replguard/mysql-m0/writer");
    assert_eq!(
        c.instances[0].writer,
        Some(Writer {
            group: "mysql-m0".into(),
            preferred: true
        })
    );
    // Without [coordination] nothing changes: no writer.
    assert_eq!(d.parse(ONE).unwrap().coordination, None);
    assert_eq!(d.parse(ONE).unwrap().instances[0].writer, None);

    let refused = |coordination: &str, instance: &str| {
        with(coordination, instance)
            .expect_err("refused")
            .to_string()
    };
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]\nlease_ttl = \"5s\"\nhandover_delay = \"5s\"",
        "",
    );
    assert!(
        e.contains("coordination.handover_delay: must be shorter than lease_ttl"),
        "{e}"
    );
    let e = refused("etcd_endpoints = []", "");
    assert!(e.contains("coordination.etcd_endpoints"), "{e}");
    let e = refused("etcd_endpoints = [\"e:2379\"]", "");
    assert!(
        e.contains("not a URL") || e.contains("want http://host:port"),
        "{e}"
    );
    let e = refused("etcd_endpoints = [\"https://e:2379\"]", "");
    assert!(e.contains("https needs etcd_ca_file"), "{e}");
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]\nlease_ttl = \"2500ms\"",
        "",
    );
    assert!(e.contains("whole seconds"), "{e}");
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]\netcd_prefix = \"replguard/\"",
        "",
    );
    assert!(e.contains("coordination.etcd_prefix"), "{e}");
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]\netcd_user = \"root\"",
        "",
    );
    assert!(e.contains("etcd_user needs etcd_password_file"), "{e}");
    let e = refused(
        "etcd_endpoints = [\"https://e:2379\"]\netcd_ca_file = \"missing.pem\"",
        "",
    );
    assert!(
        e.contains("coordination.etcd_ca_file") && e.contains("missing.pem"),
        "{e}"
    );
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]",
        "writer_preferred = true\n",
    );
    assert!(e.contains("writer_preferred: needs writer_group"), "{e}");
    let e = refused(
        "etcd_endpoints = [\"http://e:2379\"]",
        "writer_group = \"a/b\"\n",
    );
    assert!(e.contains("writer_group: use letters"), "{e}");
    // A writer group needs the section.
    let e = d
        .parse(&format!("{ONE}writer_group = \"g\"\n"))
        .expect_err("no [coordination]")
        .to_string();
    assert!(
        e.contains("writer_group: needs a [coordination] section"),
        "{e}"
    );
}

#[test]
fn pools_name_existing_instances_each_in_one_pool() {
    let d = Dir::new();
    d.file("pw", "x", 0o600);
    let three: String = ["r1", "r2", "r3"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "[[instance]]\nname = \"{n}\"\nport = {}\nuser = \"u\"\npassword_file = \"pw\"\n",
                3310 + i
            )
        })
        .collect();
    let c = d
        .parse(&format!(
            "{three}[[pool]]\nname = \"reads\"\ninstances = [\"r1\", \"r2\", \"r3\"]\n"
        ))
        .unwrap();
    assert_eq!(
        c.pools,
        vec![PoolConfig {
            name: "reads".into(),
            instances: vec!["r1".into(), "r2".into(), "r3".into()],
            min_serving: DEFAULT_MIN_SERVING,
        }]
    );
    assert!(d.parse(&three).unwrap().pools.is_empty());
    let refused = |pools: &str| {
        d.parse(&format!("{three}{pools}"))
            .expect_err("refused")
            .to_string()
    };
    for (pools, want) in [
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r9\"]\n",
            "pool[p].instances: no instance named \"r9\"",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r2\"]\n\
             [[pool]]\nname = \"q\"\ninstances = [\"r2\", \"r3\"]\n",
            "pool[q].instances: r2 is already a member of pool p",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r1\"]\n",
            "r1 is named twice",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\"]\n",
            "pool[p].min_serving: 2 is not between 1 and the pool's 1 members (the default is 2: set it)",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r2\"]\nmin_serving = 0\n",
            "pool[p].min_serving: 0 is not between 1",
        ),
        (
            "[[pool]]\nname = \"p q\"\ninstances = [\"r1\", \"r2\"]\n",
            "pool[p q].name: use letters",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r2\"]\n\
             [[pool]]\nname = \"p\"\ninstances = [\"r3\"]\nmin_serving = 1\n",
            "duplicate pool name",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = []\n",
            "pool[p].instances: name the pool's instances",
        ),
        (
            "[[pool]]\nname = \"p\"\ninstances = [\"r1\", \"r2\"]\nmin_servng = 1\n",
            "min_servng",
        ),
    ] {
        let e = refused(pools);
        assert!(e.contains(want), "{pools}: {e}");
    }
}
