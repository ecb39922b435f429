"""A `helm` command for tests, backed by the Helm v4 Go SDK (helm-python-sdk).

The syncer calls Helm through a configurable executable; in production that
is the real `helm` binary, in tests this front end. It accepts the arguments
of the subcommands the syncer uses and prints what `helm` prints for them.
Supported flags are listed in testenv/helm/README.md; anything else is an
error (exit 1), never silently ignored.
"""

import json
import os
import re
import sys


def repository_config():
    """`$HELM_REPOSITORY_CONFIG` as `repo add` writes it (JSON is YAML)."""
    path = os.environ.get("HELM_REPOSITORY_CONFIG")
    if not path or not os.path.exists(path):
        return path, {"apiVersion": "", "repositories": []}
    with open(path, encoding="utf-8") as fh:
        return path, json.load(fh)


def trust_ca_before_loading_helm(argv):
    """`--ca-file` (or the CA a `repo add` recorded for `pull NAME/CHART`)
    becomes the roots Go trusts. Go reads SSL_CERT_FILE when its runtime
    starts, which is when the SDK's library is loaded: so before the
    import."""
    ca = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--ca-file" and i + 1 < len(argv):
            ca = argv[i + 1]
        elif arg.startswith("--ca-file="):
            ca = arg.split("=", 1)[1]
    if ca is None and argv[:1] == ["pull"]:
        refs = [a for a in argv[1:] if "/" in a and not a.startswith("-") and not a.startswith("oci://")]
        if refs:
            _, cfg = repository_config()
            name = refs[-1].split("/", 1)[0]
            for r in cfg.get("repositories", []):
                if r.get("name") == name and r.get("caFile"):
                    ca = r["caFile"]
    if ca:
        os.environ["SSL_CERT_FILE"] = ca


trust_ca_before_loading_helm(sys.argv[1:])
import helm_python as helm  # noqa: E402


class Usage(Exception):
    pass


def parse(argv):
    """Splits argv into (positional, options); repeatable options collect."""
    flags_with_value = {
        "--kubeconfig", "--kube-context", "-n", "--namespace", "--version", "-f", "--values",
        "--set", "--timeout", "-o", "--output", "--max", "--revision", "--filter", "--description",
        "--username", "--ca-file", "-d", "--destination", "--url",
    }
    boolean = {
        "-i", "--install", "--wait", "--create-namespace", "--reuse-values", "--reset-values",
        "-a", "--all", "-A", "--all-namespaces", "--keep-history", "--ignore-not-found",
        "--atomic", "--rollback-on-failure", "--cleanup-on-fail", "--dry-run",
        "--password-stdin", "--force-update", "--short", "--force-conflicts",
        # Accepted and without effect: the SDK's binding has no such option
        # and always validates (testenv/helm/README.md).
        "--disable-openapi-validation",
    }
    aliases = {"-n": "--namespace", "-f": "--values", "-o": "--output", "-i": "--install", "-d": "--destination",
               "-a": "--all", "-A": "--all-namespaces", "--atomic": "--rollback-on-failure"}
    pos, opts = [], {}
    it = iter(argv)
    for arg in it:
        if arg == "--":
            # As helm (cobra): everything after is positional.
            pos.extend(it)
            break
        name, eq, inline = arg.partition("=")
        if name in flags_with_value:
            value = inline if eq else next(it, None)
            if value is None:
                raise Usage(f"flag needs an argument: {name}")
            key = aliases.get(name, name)
            if key in ("--values", "--set"):
                opts.setdefault(key, []).append(value)
            else:
                opts[key] = value
        elif arg in boolean:
            opts[aliases.get(arg, arg)] = True
        elif arg.startswith("-"):
            raise Usage(f"unknown flag: {arg}")
        else:
            pos.append(arg)
    return pos, opts


def seconds(duration):
    """Helm durations: 300s, 5m, 5m0s, 1h2m3s."""
    if duration is None:
        return None
    total, matched = 0.0, False
    for num, unit in re.findall(r"([0-9.]+)(h|m|s|ms)", duration):
        matched = True
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    if not matched:
        raise Usage(f"invalid duration {duration!r}")
    return max(1, int(total))


def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def set_value(values, assignment):
    key, eq, raw = assignment.partition("=")
    if not eq:
        raise Usage(f"--set needs KEY=VALUE, got {assignment!r}")
    value = {"true": True, "false": False, "null": None}.get(raw, raw)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        value = int(value)
    node = values
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def user_values(opts):
    values = {}
    for path in opts.get("--values", []):
        with open(path, encoding="utf-8") as fh:
            loaded = helm.values_from_yaml(fh.read()) or {}
        deep_merge(values, loaded)
    for assignment in opts.get("--set", []):
        set_value(values, assignment)
    return values


def chart_ref(release):
    """`NAME-VERSION` and the app version of an SDK release summary."""
    return f"{release.get('chart_name', '')}-{release.get('chart_version', '')}", release.get("app_version", "")


def summary_history(release):
    """One entry of `helm history -o json`."""
    chart, app = chart_ref(release)
    return {
        "revision": release.get("revision"),
        "updated": release.get("deployed_at", ""),
        "status": release.get("status", ""),
        "chart": chart,
        "app_version": app,
        "description": release.get("description", ""),
    }


def summary_list(release):
    """One entry of `helm list -o json` (its revision is a string)."""
    chart, app = chart_ref(release)
    return {
        "name": release.get("name"),
        "namespace": release.get("namespace"),
        "revision": str(release.get("revision", "")),
        "updated": release.get("deployed_at", ""),
        "status": release.get("status", ""),
        "chart": chart,
        "app_version": app,
    }


def full_release(release, values):
    """`helm status -o json` / `helm upgrade -o json`: Helm's release object."""
    return {
        "name": release.get("name"),
        "namespace": release.get("namespace"),
        "version": release.get("revision"),
        "info": {
            "status": release.get("status", ""),
            "last_deployed": release.get("deployed_at", ""),
            "description": release.get("description", ""),
        },
        "chart": {"metadata": {
            "name": release.get("chart_name", ""),
            "version": release.get("chart_version", ""),
            "appVersion": release.get("app_version", ""),
        }},
        "config": values or {},
        "manifest": release.get("manifest", ""),
    }


def output(opts, data, text):
    fmt = opts.get("--output", "table")
    if fmt == "json":
        print(json.dumps(data))
    elif fmt == "yaml":
        # JSON is valid YAML; the syncer only asks for JSON.
        print(json.dumps(data, indent=2))
    elif fmt == "table":
        print(text)
    else:
        raise Usage(f"unknown output format {fmt!r}")


def config(opts):
    kwargs = {"namespace": opts.get("--namespace", "default")}
    if "--kubeconfig" in opts:
        kwargs["kubeconfig_path"] = opts["--kubeconfig"]
    if "--kube-context" in opts:
        kwargs["kube_context"] = opts["--kube-context"]
    return helm.Config(**kwargs)


def release_exists(cfg, name):
    try:
        return bool(cfg.history(name, max_revisions=1))
    except helm.HelmNotFoundError:
        return False
    except helm.HelmError as e:
        if "not found" in str(e):
            return False
        raise


def upgrade_forcing_conflicts(cfg, chart, name, values, common):
    """`helm upgrade --force-conflicts`: Helm 4's server-side apply takes
    back fields another manager (a `kubectl edit`) owns. The SDK's Python
    binding does not expose the option; its native call does."""
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts
    handle, ref = cfg._chart_args(chart)
    payload = _native.call_string(
        "helm_upgrade", cfg._raw(), cfg._context_arg(None), handle, ref, name, json.dumps(values),
        _opts(
            namespace=common["namespace"],
            timeout_seconds=common["timeout"],
            wait=common["wait"],
            chart_version=common["chart_version"],
            description=common["description"],
            rollback_on_failure=common["rollback_on_failure"] or None,
            force_conflicts=True,
        ),
    )
    return _loads_obj(payload)


def cmd_upgrade(pos, opts, install_only=False):
    if len(pos) != 2:
        raise Usage("requires NAME and CHART")
    name, chart = pos
    values = user_values(opts)
    common = dict(
        namespace=opts.get("--namespace", "default"),
        timeout=seconds(opts.get("--timeout")),
        wait="watcher" if opts.get("--wait") else None,
        chart_version=opts.get("--version"),
        description=opts.get("--description"),
        rollback_on_failure=bool(opts.get("--rollback-on-failure")),
    )
    with config(opts) as cfg:
        if install_only or (opts.get("--install") and not release_exists(cfg, name)):
            rel = cfg.install(chart, name, values, create_namespace=bool(opts.get("--create-namespace")), **common)
            verb = "installed"
        elif opts.get("--force-conflicts"):
            rel = upgrade_forcing_conflicts(cfg, chart, name, values, common)
            verb = "upgraded"
        else:
            rel = cfg.upgrade(
                chart, name, values,
                reuse_values=bool(opts.get("--reuse-values")),
                reset_values=bool(opts.get("--reset-values")),
                cleanup_on_fail=bool(opts.get("--cleanup-on-fail")),
                **common,
            )
            verb = "upgraded"
        values_now = cfg.get_values(name)
    output(opts, full_release(rel, values_now),
           f'Release "{name}" has been {verb}. Happy Helming!\nREVISION: {rel.get("revision")}')


def cmd_template(pos, opts):
    if len(pos) != 2:
        raise Usage("requires NAME and CHART")
    name, chart_path = pos
    with helm.Chart.load(chart_path) as chart:
        rendered = chart.render(user_values(opts), name=name, namespace=opts.get("--namespace", "default"))
    for path in sorted(rendered):
        body = rendered[path].strip()
        if not body or path.endswith("NOTES.txt"):
            continue
        print(f"---\n# Source: {path}\n{body}")


def cmd_get(pos, opts):
    if len(pos) != 2 or pos[0] != "values":
        raise Usage("supported: get values NAME")
    revision = int(opts["--revision"]) if "--revision" in opts else None
    with config(opts) as cfg:
        values = cfg.get_values(pos[1], all_values=bool(opts.get("--all")), revision=revision)
    output(opts, values or None, "USER-SUPPLIED VALUES:\n" + json.dumps(values or None, indent=2))


def cmd_history(pos, opts):
    if len(pos) != 1:
        raise Usage("requires NAME")
    maximum = int(opts["--max"]) if "--max" in opts else None
    with config(opts) as cfg:
        revs = [summary_history(r) for r in cfg.history(pos[0], max_revisions=maximum)]
    table = "\n".join(f"{r['revision']}\t{r['status']}\t{r['chart']}\t{r['description']}" for r in revs)
    output(opts, revs, "REVISION\tSTATUS\tCHART\tDESCRIPTION\n" + table)


def cmd_status(pos, opts):
    if len(pos) != 1:
        raise Usage("requires NAME")
    revision = int(opts["--revision"]) if "--revision" in opts else None
    with config(opts) as cfg:
        rel = cfg.status(pos[0], revision=revision)
        values = cfg.get_values(pos[0], revision=revision)
    output(opts, full_release(rel, values),
           f"NAME: {rel.get('name')}\nNAMESPACE: {rel.get('namespace')}\nSTATUS: {rel.get('status')}\nREVISION: {rel.get('revision')}")


def cmd_rollback(pos, opts):
    if len(pos) not in (1, 2):
        raise Usage("requires NAME [REVISION]")
    version = int(pos[1]) if len(pos) == 2 else None
    with config(opts) as cfg:
        cfg.rollback(pos[0], version=version, timeout=seconds(opts.get("--timeout")),
                     wait="watcher" if opts.get("--wait") else None)
    print("Rollback was a success! Happy Helming!")


def cmd_list(pos, opts):
    if pos:
        raise Usage("takes no arguments")
    with config(opts) as cfg:
        rels = cfg.list(all_states=bool(opts.get("--all")), all_namespaces=bool(opts.get("--all-namespaces")),
                        name_filter=opts.get("--filter"))
    rows = [summary_list(r) for r in rels]
    table = "\n".join(f"{r['name']}\t{r['namespace']}\t{r['revision']}\t{r['status']}\t{r['chart']}" for r in rows)
    output(opts, rows, "NAME\tNAMESPACE\tREVISION\tSTATUS\tCHART\n" + table)


def cmd_uninstall(pos, opts):
    if len(pos) != 1:
        raise Usage("requires NAME")
    with config(opts) as cfg:
        cfg.uninstall(pos[0], keep_history=bool(opts.get("--keep-history")), timeout=seconds(opts.get("--timeout")),
                      ignore_not_found=bool(opts.get("--ignore-not-found")),
                      wait="watcher" if opts.get("--wait") else None)
    print(f'release "{pos[0]}" uninstalled')


def read_password(opts):
    if not opts.get("--password-stdin"):
        return None
    return sys.stdin.read().rstrip("\r\n")


def cmd_repo(pos, opts):
    if pos[:1] == ["add"] and len(pos) == 3:
        name, url = pos[1], pos[2].rstrip("/")
        username, password = opts.get("--username"), read_password(opts)
        # As helm: the index must be readable with these credentials.
        helm.repo_index(url, username=username, password=password)
        path, cfg = repository_config()
        if path is None:
            raise Usage("HELM_REPOSITORY_CONFIG is not set")
        repos = [r for r in cfg.get("repositories", []) if r.get("name") != name]
        if len(repos) != len(cfg.get("repositories", [])) and not opts.get("--force-update"):
            raise Usage(f"repository name ({name}) already exists, please specify a different name")
        repos.append({"name": name, "url": url, "username": username or "", "password": password or "",
                      "caFile": opts.get("--ca-file", "")})
        cfg["repositories"] = repos
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh)
        print(f'"{name}" has been added to your repositories')
    elif pos[:1] == ["index"] and len(pos) == 2:
        helm.repo_index_generate(pos[1], base_url=opts.get("--url"))
    else:
        raise Usage("supported: repo add NAME URL, repo index DIR")


def registry_client():
    path = os.environ.get("HELM_REGISTRY_CONFIG")
    return helm.RegistryClient(credentials_file=path) if path else helm.RegistryClient()


def cmd_registry(pos, opts):
    if pos[:1] != ["login"] or len(pos) != 2:
        raise Usage("supported: registry login HOST")
    with registry_client() as client:
        client.login(pos[1], opts.get("--username", ""), read_password(opts) or "")
    print("Login Succeeded")


def cmd_pull(pos, opts):
    if len(pos) != 1:
        raise Usage("requires CHART")
    ref, dest = pos[0], opts.get("--destination", ".")
    if ref.startswith("oci://"):
        with registry_client() as client:
            client.pull(ref, version=opts.get("--version"), destination=dest)
        return
    name, _, chart = ref.partition("/")
    _, cfg = repository_config()
    repo = next((r for r in cfg.get("repositories", []) if r.get("name") == name), None)
    if repo is None or not chart:
        raise Usage(f"repo {name} not found")
    helm.pull(chart, repo_url=repo["url"], version=opts.get("--version"), destination=dest,
              username=repo.get("username") or None, password=repo.get("password") or None)


def cmd_push(pos, opts):
    if len(pos) != 2:
        raise Usage("requires CHART.tgz and REMOTE")
    with registry_client() as client:
        client.push(pos[0], pos[1])
    print(f"Pushed: {pos[1]}")


def cmd_package(pos, opts):
    if len(pos) != 1:
        raise Usage("requires CHART_PATH")
    print(f"Successfully packaged chart and saved it to: {helm.package(pos[0], destination=opts.get('--destination', '.'))}")


def cmd_version(pos, opts):
    if pos:
        raise Usage("takes no arguments")
    from helm_python import _native
    version = _native.helm_sdk_version()
    print(version if opts.get("--short") else f'version.BuildInfo{{Version:"{version}"}}')


COMMANDS = {
    "version": cmd_version,
    "repo": cmd_repo,
    "registry": cmd_registry,
    "pull": cmd_pull,
    "push": cmd_push,
    "package": cmd_package,
    "upgrade": cmd_upgrade,
    "install": lambda p, o: cmd_upgrade(p, o, install_only=True),
    "template": cmd_template,
    "get": cmd_get,
    "history": cmd_history,
    "status": cmd_status,
    "rollback": cmd_rollback,
    "list": cmd_list,
    "ls": cmd_list,
    "uninstall": cmd_uninstall,
}


def main(argv):
    try:
        pos, opts = parse(argv)
        if not pos or pos[0] not in COMMANDS:
            raise Usage(f"unknown command {pos[0] if pos else ''!r}; supported: {', '.join(sorted(COMMANDS))}")
        COMMANDS[pos[0]](pos[1:], opts)
        return 0
    except Usage as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except helm.HelmError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
