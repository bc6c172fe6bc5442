//! The shipped form: the portable binary (cargo-zigbuild against glibc 2.17 symbol
//! versions) runs every subcommand and the module here and needs nothing newer than
//! glibc 2.17; the collection tarball builds, installs and runs; the docs, role argument
//! specs and role defaults agree with the one source each copies.
//!
//! ansible/build-portable is called by both building tests; cargo builds the release
//! binary once per suite run and finds it fresh the second time.

use crate::common;

use rundock_testkit as kit;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The glibc baseline of ansible/build-portable.
const GLIBC_BASELINE: (u32, u32) = (2, 17);

fn collection_dir() -> PathBuf {
    kit::workspace_root().join("ansible_collections/rundock/rundock")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        kit::stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds (or finds fresh) the portable binary; its path.
fn portable_binary() -> PathBuf {
    let out = Command::new(kit::workspace_root().join("ansible/build-portable"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-portable failed:\n{}",
        text(&out)
    );
    PathBuf::from(kit::stdout(&out).trim())
}

/// The highest `GLIBC_x.y` symbol version `objdump -T` lists for `binary`.
fn highest_glibc(binary: &Path) -> (u32, u32) {
    let out = kit::run("objdump", &["-T", binary.to_str().unwrap()]);
    assert!(out.status.success(), "objdump: {}", text(&out));
    glibc_versions(&kit::stdout(&out))
        .into_iter()
        .max()
        .expect("no GLIBC symbol versions: not a dynamically linked glibc binary?")
}

fn glibc_versions(objdump: &str) -> Vec<(u32, u32)> {
    objdump
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .collect()
}

#[test]
fn glibc_versions_are_read_from_objdump_lines() {
    let sample =
        "0000 DF *UND* 0000 (GLIBC_2.2.5) memcpy\n0000 DF *UND* 0000 (GLIBC_2.17) clock_gettime\n\
                  0000 DF *UND* 0000 (GLIBC_2.3) __tls_get_addr\n";
    assert_eq!(glibc_versions(sample), vec![(2, 2), (2, 17), (2, 3)]);
    assert_eq!(glibc_versions(sample).into_iter().max(), Some((2, 17)));
}

/// The subcommands `rundock --help` lists (so a new one is covered without a change here).
fn listed_subcommands(binary: &Path) -> Vec<String> {
    let out = kit::run(binary.to_str().unwrap(), &["--help"]);
    assert!(out.status.success(), "{}", text(&out));
    kit::stdout(&out)
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn portable_binary_needs_at_most_glibc_2_17_and_runs_every_subcommand_and_the_module() {
    let binary = portable_binary();
    let size = std::fs::metadata(&binary).unwrap().len();
    let glibc = highest_glibc(&binary);
    eprintln!(
        "portable binary: {} bytes ({:.1} MiB), highest GLIBC_{}.{}",
        size,
        size as f64 / 1048576.0,
        glibc.0,
        glibc.1
    );
    assert!(
        glibc <= GLIBC_BASELINE,
        "the portable binary needs GLIBC_{}.{}",
        glibc.0,
        glibc.1
    );

    let version = kit::run(binary.to_str().unwrap(), &["--version"]);
    assert_eq!(
        kit::stdout(&version).trim(),
        format!("rundock {}", env!("CARGO_PKG_VERSION"))
    );
    let listed = listed_subcommands(&binary);
    for expected in ["dns", "watch", "status", "history", "logs", "metrics"] {
        assert!(listed.iter().any(|c| c == expected), "{listed:?}");
    }
    // What the run scripts exec is hidden from --help, and still there.
    let plumbing = ["supervise", "announce", "stop-tree", "log", "module"];
    for hidden in plumbing {
        assert!(
            !listed.iter().any(|c| c == hidden),
            "{hidden} listed: {listed:?}"
        );
    }
    for command in listed.iter().map(String::as_str).chain(plumbing) {
        let out = kit::run(binary.to_str().unwrap(), &[command, "--help"]);
        assert!(
            out.status.success() && kit::stdout(&out).contains("Usage:"),
            "rundock {command} --help: {}",
            text(&out)
        );
    }

    // The module, as Ansible runs it: an args file, check mode, then for real.
    let host = tempfile::tempdir().unwrap();
    let args = |check: bool| {
        serde_json::json!({
            "state": "present", "name": "portable", "image": kit::TEST_IMAGE,
            "sv_dir": host.path().join("sv"), "service_dir": host.path().join("service"),
            "log_dir": host.path().join("log"), "install_dir": host.path().join("install"),
            "_ansible_check_mode": check, "_ansible_diff": true,
        })
    };
    for (check, changed) in [(true, true), (false, true), (false, false)] {
        let file = host.path().join("args");
        std::fs::write(&file, args(check).to_string()).unwrap();
        let out = kit::run(binary.to_str().unwrap(), &[file.to_str().unwrap()]);
        let result: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("module output is not JSON ({e}): {}", text(&out)));
        assert_eq!(result.get("failed"), None, "{result}");
        assert_eq!(result["changed"], changed, "check={check}: {result}");
    }
    assert!(host.path().join("sv/docker-portable/spec.json").exists());
    let file = host.path().join("args");
    let mut unknown = args(true);
    unknown["colour"] = "red".into();
    std::fs::write(&file, unknown.to_string()).unwrap();
    let out = kit::run(binary.to_str().unwrap(), &[file.to_str().unwrap()]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["failed"], true, "{result}");
    assert!(
        result["msg"].as_str().unwrap_or("").contains("colour"),
        "{result}"
    );
}

/// Runs an Ansible program with the collections in `collections` and nothing from this
/// checkout's ansible.cfg.
fn ansible_with(collections: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(kit::ansible_bin_dir().join(program))
        .args(args)
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("ANSIBLE_INJECT_FACTS_AS_VARS", "False")
        .current_dir(collections)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn collection_builds_installs_and_runs_from_the_tarball() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(kit::workspace_root().join("ansible/build-collection"))
        .arg(out_dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "build-collection:\n{}", text(&out));
    let tarball = kit::stdout(&out).trim().to_string();
    assert!(
        tarball.ends_with(&format!(
            "rundock-rundock-{}.tar.gz",
            env!("CARGO_PKG_VERSION")
        )),
        "{tarball}"
    );
    let listing = kit::stdout(&kit::run("tar", &["tvzf", &tarball]));
    let module = listing
        .lines()
        .find(|l| l.ends_with(" plugins/modules/rundock"))
        .unwrap_or_else(|| panic!("no module binary in the tarball:\n{listing}"));
    assert!(module.starts_with("-rwxr-xr-x"), "{module}");
    // The info module is the same binary: a link in the tarball, not a second copy.
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(" plugins/modules/rundock_info -> rundock")),
        "no rundock_info link in the tarball:\n{listing}"
    );
    assert!(listing
        .lines()
        .any(|l| l.ends_with(" plugins/modules/rundock_info.yml")));
    for role in ["host", "service", "dns", "metrics", "layout"] {
        for file in ["meta/main.yml", "meta/argument_specs.yml"] {
            let path = format!(" roles/{role}/{file}");
            assert!(
                listing.lines().any(|l| l.ends_with(&path)),
                "{path} missing"
            );
        }
    }

    let installed = tempfile::tempdir().unwrap();
    let install = Command::new(kit::ansible_bin_dir().join("ansible-galaxy"))
        .args(["collection", "install", "--force", &tarball, "-p"])
        .arg(installed.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(install.status.success(), "install:\n{}", text(&install));
    let binary = installed
        .path()
        .join("ansible_collections/rundock/rundock/plugins/modules/rundock");
    assert!(
        highest_glibc(&binary) <= GLIBC_BASELINE,
        "the tarball's module is not the portable one"
    );

    let (ok, doc) = ansible_with(
        installed.path(),
        "ansible-doc",
        &["rundock.rundock.rundock"],
    );
    assert!(ok && doc.contains("sample:"), "{doc}");
    let (ok, doc) = ansible_with(
        installed.path(),
        "ansible-doc",
        &["rundock.rundock.rundock_info"],
    );
    assert!(ok && doc.contains("missing"), "{doc}");
    for role in ["host", "service", "dns", "metrics", "layout"] {
        let (ok, doc) = ansible_with(
            installed.path(),
            "ansible-doc",
            &["-t", "role", &format!("rundock.rundock.{role}")],
        );
        assert!(ok, "ansible-doc -t role rundock.rundock.{role}:\n{doc}");
    }

    // The installed module, ad hoc by its full name: installs a tree, then changes nothing.
    let host = tempfile::tempdir().unwrap();
    let options = format!(
        "state=present name=shipped image={} sv_dir={} service_dir={} log_dir={} install_dir={}",
        kit::TEST_IMAGE,
        host.path().join("sv").display(),
        host.path().join("service").display(),
        host.path().join("log").display(),
        host.path().join("install").display()
    );
    let adhoc = [
        "localhost",
        "-c",
        "local",
        "-i",
        "localhost,",
        "-m",
        "rundock.rundock.rundock",
        "-a",
        &options,
    ];
    let (ok, first) = ansible_with(installed.path(), "ansible", &adhoc);
    assert!(ok && first.contains("localhost | CHANGED"), "{first}");
    let (ok, second) = ansible_with(installed.path(), "ansible", &adhoc);
    assert!(ok && second.contains("localhost | SUCCESS"), "{second}");
    // The installed info module shows it.
    let sv_dir = format!("sv_dir={}", host.path().join("sv").display());
    let info = [
        "localhost",
        "-c",
        "local",
        "-i",
        "localhost,",
        "-m",
        "rundock.rundock.rundock_info",
        "-a",
        &sv_dir,
    ];
    let (ok, shown) = ansible_with(installed.path(), "ansible", &info);
    assert!(
        ok && shown.contains("\"name\": \"shipped\"") && shown.contains("\"state\": \"disabled\""),
        "{shown}"
    );
}

/// `ansible-galaxy collection build` in `dir`, writing to `out`; (success, output).
fn galaxy_build(dir: &Path, out: &Path) -> (bool, String) {
    let build = Command::new(kit::ansible_bin_dir().join("ansible-galaxy"))
        .args(["collection", "build", "--output-path"])
        .arg(out)
        .current_dir(dir)
        .env("ANSIBLE_NOCOLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (build.status.success(), text(&build))
}

/// A Galaxy user's first move, `ansible-galaxy collection build` in the collection, ships
/// the module binary the checkout's module slot holds (tests/setup builds it there), as a
/// file; where the slot is empty the build fails naming it instead of leaving the module out.
#[test]
fn a_plain_galaxy_build_ships_the_module_or_fails_naming_it() {
    let slot = kit::workspace_root().join("target/ansible-module/rundock");
    let slot_size = std::fs::metadata(&slot)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (tests/setup builds the module there)",
                slot.display()
            )
        })
        .len();
    let out_dir = tempfile::tempdir().unwrap();
    let (ok, report) = galaxy_build(&collection_dir(), out_dir.path());
    assert!(ok, "{report}");
    let tarball = out_dir.path().join(format!(
        "rundock-rundock-{}.tar.gz",
        env!("CARGO_PKG_VERSION")
    ));
    let listing = kit::stdout(&kit::run("tar", &["tvzf", tarball.to_str().unwrap()]));
    let module = listing
        .lines()
        .find(|l| l.ends_with(" plugins/modules/rundock"))
        .unwrap_or_else(|| panic!("no module in the tarball:\n{listing}"));
    assert!(
        module.starts_with("-rwxr-xr-x") && module.contains(&format!(" {slot_size} ")),
        "the module is not the slot's {slot_size}-byte executable: {module}"
    );
    for file in [
        "LICENSE",
        "changelogs/changelog.yaml",
        "changelogs/config.yaml",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {file}"))),
            "{file} missing:\n{listing}"
        );
    }
    let manifest = kit::run(
        "tar",
        &["xzf", tarball.to_str().unwrap(), "-O", "MANIFEST.json"],
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    for key in ["repository", "issues", "documentation"] {
        let url = manifest["collection_info"][key].as_str().unwrap_or("");
        assert!(url.starts_with("https://"), "{key}: {manifest}");
    }
    let license = std::fs::read_to_string(collection_dir().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));

    // The collection as a clone has it before tests/setup: the module link points nowhere.
    let clone = tempfile::tempdir().unwrap();
    let staged = clone.path().join("ansible_collections/rundock");
    std::fs::create_dir_all(&staged).unwrap();
    let copy = kit::run(
        "cp",
        &[
            "-a",
            collection_dir().to_str().unwrap(),
            staged.to_str().unwrap(),
        ],
    );
    assert!(copy.status.success(), "{}", text(&copy));
    let (ok, report) = galaxy_build(&staged.join("rundock"), clone.path());
    assert!(!ok, "the build succeeded without a module:\n{report}");
    assert!(
        report.contains("target/ansible-module/rundock")
            && report.contains("plugins/modules/rundock"),
        "{report}"
    );
    assert!(
        !std::fs::read_dir(clone.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "gz")),
        "a tarball was written"
    );
}

/// ansible-lint (the version tests/setup pins) finds nothing in the collection and the
/// playbooks at the production profile of the checkout's .ansible-lint.
#[test]
fn ansible_lint_finds_nothing_in_the_collection_and_the_playbooks() {
    let root = kit::workspace_root();
    let path = format!(
        "{}:{}",
        kit::ansible_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(kit::ansible_bin_dir().join("ansible-lint"))
        .args([
            "--nocolor",
            "ansible_collections/rundock/rundock",
            "playbooks",
        ])
        .env("ANSIBLE_COLLECTIONS_PATH", &root)
        .env("PATH", path)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("Passed: 0 failure(s)")
            && report.contains("Profile 'production' was required, and it passed"),
        "{report}"
    );
    // Both trees were read: the roles' files and the two playbooks.
    let processed: u32 = report
        .split(" files processed")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no file count:\n{report}"));
    assert!(processed >= 40, "only {processed} files linted:\n{report}");
}

/// The changelog (config, changelog.yaml and every fragment) is as antsibull-changelog
/// reads it, so `antsibull-changelog release` can fold the fragments in.
#[test]
fn the_changelog_passes_antsibull_changelog_lint() {
    let out = Command::new(kit::ansible_bin_dir().join("antsibull-changelog"))
        .arg("lint")
        .current_dir(collection_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = text(&out);
    assert!(out.status.success() && report.trim().is_empty(), "{report}");
    let fragments = std::fs::read_dir(collection_dir().join("changelogs/fragments"))
        .unwrap()
        .count();
    assert!(fragments > 0, "no changelog fragment for this release");
}

/// Checks in Python with PyYAML (in the Ansible venv), printing one line per problem.
const AGREEMENT_CHECK: &str = r#"
import sys, yaml
root = sys.argv[1]
version = sys.argv[2]
problems = []
load = lambda p: yaml.safe_load(open(root + '/' + p))
docs = load('plugins/modules/rundock.yml')
doc = docs['DOCUMENTATION']

def samples(keys, where):
    for key, spec in keys.items():
        if 'sample' not in spec:
            problems.append('RETURN %s%s has no sample' % (where, key))
        samples(spec.get('contains', {}), where + key + '.')
samples(docs['RETURN'], '')
if not doc.get('requirements'):
    problems.append('DOCUMENTATION has no requirements')
for attribute in ('check_mode', 'diff_mode'):
    if doc.get('attributes', {}).get(attribute, {}).get('support') != 'full':
        problems.append('attributes.%s.support is not full' % attribute)
examples = docs['EXAMPLES']
for what, needle in [('ad hoc', 'ansible node'), ('health checks', 'health:'), ('TLS etcd', 'cert_file:'),
                     ('rolling update', 'serial: 1'), ('the full name', 'rundock.rundock.rundock:')]:
    if needle not in examples:
        problems.append('EXAMPLES lack %s (%r)' % (what, needle))
yaml.safe_load(examples)

galaxy = load('galaxy.yml')
if str(galaxy['version']) != version:
    problems.append('galaxy.yml version %s is not the crate version %s' % (galaxy['version'], version))

layout = load('roles/layout/defaults/main.yml')
for var, option in [('rundock_sv_dir', 'sv_dir'), ('rundock_service_dir', 'service_dir'),
                    ('rundock_log_dir', 'log_dir'), ('rundock_install_dir', 'install_dir')]:
    if layout[var] != doc['options'][option].get('default'):
        problems.append('layout %s=%r but the module option %s defaults to %r'
                        % (var, layout[var], option, doc['options'][option].get('default')))

for role in ('layout', 'host', 'service', 'dns', 'metrics', 'frontend'):
    try:
        load('roles/%s/meta/main.yml' % role)
        specs = load('roles/%s/meta/argument_specs.yml' % role)['argument_specs']
    except OSError as e:
        problems.append('role %s: %s' % (role, e))
        continue
    try:
        defaults = load('roles/%s/defaults/main.yml' % role) or {}
    except OSError:
        defaults = {}
    options = specs['main']['options']
    for var, value in defaults.items():
        if var not in options:
            problems.append('role %s: default %s is not in its argument spec' % (role, var))
        elif options[var].get('default', value) != value:
            problems.append('role %s: %s defaults to %r but its argument spec says %r'
                            % (role, var, value, options[var]['default']))
for problem in problems:
    print(problem)
"#;

#[test]
fn docs_specs_and_defaults_agree_with_their_sources() {
    let out = Command::new(kit::ansible_bin_dir().join("python3"))
        .args(["-c", AGREEMENT_CHECK])
        .arg(collection_dir())
        .arg(env!("CARGO_PKG_VERSION"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let problems = kit::stdout(&out);
    assert!(problems.trim().is_empty(), "{problems}");

    // The same docs through ansible-doc, from this checkout's -M path and as the collection.
    let (ok, doc) = ansible_with(
        &kit::workspace_root(),
        "ansible-doc",
        &["-M", "ansible/library", "rundock"],
    );
    assert!(ok && doc.contains("REQUIREMENTS"), "{doc}");
}

/// Plays one role on localhost with `vars` (YAML flow mapping); (success, output).
fn play_role(role: &str, vars: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("play.yml");
    std::fs::write(
        &playbook,
        format!(
            "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: rundock.rundock.{role}\n      vars: {vars}\n"
        ),
    )
    .unwrap();
    ansible_with(
        &kit::workspace_root(),
        "ansible-playbook",
        &[
            "-c",
            "local",
            "-i",
            "localhost,",
            playbook.to_str().unwrap(),
        ],
    )
}

#[test]
fn wrong_role_variables_fail_at_role_entry_naming_the_variable() {
    let (ok, out) = play_role("service", "{rundock_services: web}");
    assert!(!ok, "{out}");
    assert!(out.contains("rundock_services"), "{out}");
    assert!(
        out.contains("Validating arguments against arg spec"),
        "{out}"
    );

    let (ok, out) = play_role("service", "{rundock_services: [{image: busybox}]}");
    assert!(!ok, "{out}");
    assert!(
        out.contains("rundock_services: every item needs a name"),
        "{out}"
    );

    let (ok, out) = play_role(
        "host",
        "{rundock_runsvdir: sometimes, rundock_install_packages: false}",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("rundock_runsvdir"), "{out}");

    let (ok, out) = play_role("dns", "{rundock_dns_domains: []}");
    assert!(!ok, "{out}");
    assert!(out.contains("rundock_dns_domains"), "{out}");

    let (ok, out) = play_role("metrics", "{rundock_metrics_state: sometimes}");
    assert!(!ok, "{out}");
    assert!(out.contains("rundock_metrics_state"), "{out}");

    let (ok, out) = play_role(
        "frontend",
        "{rundock_frontend_names: [web], rundock_frontend_proxy: caddy}",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("rundock_frontend_proxy"), "{out}");
    // Nothing unchecked reaches the proxy's configuration: a name that is no DNS name,
    // a listen address with more than an address and a port.
    for vars in [
        "{rundock_frontend_names: ['web; include /etc/passwd']}",
        "{rundock_frontend_names: [web], rundock_frontend_listen: '80 ssl'}",
    ] {
        let (ok, out) = play_role("frontend", vars);
        assert!(!ok, "{vars}: {out}");
        assert!(
            out.contains("rundock_frontend_names must list"),
            "{vars}: {out}"
        );
    }
}

/// The metrics role installs `rundock metrics` as a runit service that serves the host's
/// services on the address given, and removes it again.
#[test]
fn the_metrics_role_runs_rundock_metrics_under_runit() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display();
    std::fs::create_dir_all(root.path().join("service")).unwrap();
    let _runsvdir = kit::Runsvdir::start(&root.path().join("service"));
    let port = kit::free_port();
    let vars = |state: &str| {
        format!(
            "{{rundock_sv_dir: {r}/sv, rundock_service_dir: {r}/service, rundock_log_dir: {r}/log, \
             rundock_bin: {bin}, rundock_metrics_listen: '127.0.0.1:{port}', rundock_metrics_state: {state}}}",
            bin = common::BIN
        )
    };
    let (ok, out) = play_role("metrics", &vars("enabled"));
    assert!(ok, "{out}");
    let scraped = kit::wait_for(Duration::from_secs(10), || {
        let out = kit::run(
            "curl",
            &["-sf", &format!("http://127.0.0.1:{port}/metrics")],
        );
        out.status.success().then(|| kit::stdout(&out))
    });
    assert!(
        scraped.is_some(),
        "rundock metrics answers on 127.0.0.1:{port}"
    );
    let (ok, out) = play_role("metrics", &vars("absent"));
    assert!(ok, "{out}");
    assert!(!root.path().join("service/rundock-metrics").exists());
    assert!(!root.path().join("sv/rundock-metrics").exists());
}

#[test]
fn the_host_role_refuses_to_guess_when_no_init_runs_runsvdir() {
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if ["systemd", "runit", "init"].contains(&pid1.trim()) {
        eprintln!(
            "PID 1 is {}: this machine has an init; nothing to check",
            pid1.trim()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let vars = format!(
        "{{rundock_install_packages: false, rundock_sv_dir: {r}/sv, rundock_service_dir: {r}/service, \
         rundock_log_dir: {r}/log, rundock_bin: {r}/bin/rundock, rundock_binary: {bin}}}",
        r = root.path().display(),
        bin = common::BIN
    );
    let (ok, out) = play_role("host", &vars);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("rundock_runsvdir: PID 1 is {}", pid1.trim()))
            && out.contains("rundock_runsvdir: external"),
        "{out}"
    );
}

/// The method the host role picks for an init named in `rundock_runsvdir` (detection
/// itself is checked above): (success, output).
fn runsvdir_method(init: &str, service_dir: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("play.yml");
    std::fs::write(
        &playbook,
        format!(
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.include_role:\n        \
             name: rundock.rundock.host\n        tasks_from: runsvdir_method\n      \
             vars: {{rundock_runsvdir: {init}, rundock_service_dir: {service_dir}}}\n    \
             - ansible.builtin.debug:\n        msg: \"method={{{{ rundock_runsvdir_method }}}}\"\n"
        ),
    )
    .unwrap();
    ansible_with(
        &kit::workspace_root(),
        "ansible-playbook",
        &[
            "-c",
            "local",
            "-i",
            "localhost,",
            playbook.to_str().unwrap(),
        ],
    )
}

#[test]
fn the_runsvdir_method_follows_the_init_and_the_service_dir() {
    for (init, service_dir, method) in [
        ("systemd", "/etc/service", "debian-systemd"),
        ("systemd", "/srv/service", "systemd-unit"),
        ("sysvinit", "/etc/service", "debian-sysvinit"),
        ("runit", "/etc/service", "runit"),
        ("external", "/srv/service", "external"),
    ] {
        let (ok, out) = runsvdir_method(init, service_dir);
        assert!(
            ok && out.contains(&format!("\"msg\": \"method={method}\"")),
            "{init} {service_dir}:\n{out}"
        );
    }
    for init in ["runit", "sysvinit"] {
        let (ok, out) = runsvdir_method(init, "/srv/service");
        assert!(!ok, "{out}");
        assert!(
            out.contains(&format!(
                "rundock_service_dir: {init} runs runsvdir on /etc/service only"
            )),
            "{out}"
        );
    }
}

/// The `>=A,<B` of meta/runtime.yml's requires_ansible: the oldest and the first
/// unclaimed ansible-core release, as (major, minor).
fn claimed_ansible() -> ((u32, u32), (u32, u32)) {
    let runtime = std::fs::read_to_string(collection_dir().join("meta/runtime.yml")).unwrap();
    let claim = runtime
        .lines()
        .find_map(|l| l.strip_prefix("requires_ansible: "))
        .expect("requires_ansible")
        .trim_matches('"');
    let version = |v: &str| {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let (low, high) = claim.split_once(',').expect("requires_ansible: \">=A,<B\"");
    (
        version(low.strip_prefix(">=").unwrap()),
        version(high.strip_prefix('<').unwrap()),
    )
}

/// The (major, minor) of the ansible-core in the venv whose bin dir is `bin`.
fn ansible_core_version(bin: &Path) -> (u32, u32) {
    let out = kit::run(bin.join("ansible").to_str().unwrap(), &["--version"]);
    let text = kit::stdout(&out);
    let version = text
        .split("[core ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no core version in {text}"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// `ansible-test sanity` on the collection (ansible/sanity; the first run makes its
/// venvs from PyPI, later runs take seconds) with the oldest ansible-core the collection
/// claims (.venv-oldest) and the newest (.venv), so the claim is what is tested.
#[test]
fn ansible_test_sanity_passes_on_the_oldest_and_newest_claimed_ansible_core() {
    let (oldest, unclaimed) = claimed_ansible();
    let root = kit::workspace_root();
    let venvs = [
        (root.join(".venv-oldest/bin"), oldest),
        (kit::ansible_bin_dir(), (unclaimed.0, unclaimed.1 - 1)),
    ];
    for (bin, claimed) in venvs {
        let core = ansible_core_version(&bin);
        assert_eq!(
            core,
            claimed,
            "{} has ansible-core {core:?}, the claim's end is {claimed:?} (tests/setup makes the venvs)",
            bin.display()
        );
        let out = Command::new(root.join("ansible/sanity"))
            .env("RUNDOCK_ANSIBLE_BIN", &bin)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let report = text(&out);
        assert!(out.status.success(), "ansible-core {core:?}:\n{report}");
        for test in [
            "ansible-doc",
            "validate-modules",
            "yamllint",
            "runtime-metadata",
            "shebang",
        ] {
            assert!(
                report.contains(&format!("Running sanity test \"{test}\"")),
                "{test} did not run on ansible-core {core:?}:\n{report}"
            );
        }
        eprintln!(
            "ansible-test sanity passes on ansible-core {}.{}",
            core.0, core.1
        );
    }
    // Every release in between has its ignore file (ansible-test reads ignore-X.Y.txt).
    for minor in oldest.1..unclaimed.1 {
        let file = collection_dir().join(format!("tests/sanity/ignore-{}.{minor}.txt", oldest.0));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}
