#!/usr/bin/env python3
"""Runs the README's commands and examples as a new user would.

On a fresh clone of this checkout, with nothing but its files:

- the README's first command exactly as written, ``cargo run --release --
  serve --demo``, and the query that its printed token answers (the "Try it"
  line it prints, too);
- every ``curl`` example of README.md, taken from README.md itself (so the two
  cannot drift), with only its placeholders filled in: ``$TOKEN`` (exported,
  as the README says), the pathway id ``pwy_…`` from the first query's
  answer, the bulk export's ``exp_…`` from its kick-off's ``content-location``, ``$PASSWORD`` from the README's own ``PASSWORD=$(cargo run … staff
  create …)`` line, and for the webhook example the receiver's URL;
- ``TOKEN=$(journeymap token create --clinic glow --name "HubSpot sync")``;
- the Node.js and Python webhook verification snippets, also taken from
  README.md, against a real signed delivery from a running server (started
  with ``--allow-private-webhook-targets``, so that it may deliver to a
  receiver on this machine), and against a tampered one;
- the dashboard address and staff sign-in ``serve --demo`` prints, and the
  Dashboard section's ``curl -sI`` of the page's headers;
- the PostgreSQL section's ``cargo run --release -- serve --demo``.

Prints one line per check and ends with ``readme: N passed, 0 failed``;
exits non-zero on the first failure.
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
DEMO_URL = "http://127.0.0.1:8080"
PASSED = []


def fail(message):
    print(f"FAILED: {message}", flush=True)
    print(f"readme: {len(PASSED)} passed, 1 failed", flush=True)
    sys.exit(1)


def passed(what):
    PASSED.append(what)
    print(f"ok: {what}", flush=True)


def fenced(lang):
    """The fenced code blocks of README.md in `lang`."""
    return re.findall(r"^```" + re.escape(lang) + r"\n(.*?)^```", README, re.S | re.M)


def logical_lines(block):
    """A shell block's commands, backslash continuations joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def readme_commands(prefix):
    """Every command of the README's sh blocks that starts with `prefix`."""
    found = []
    for block in fenced("sh"):
        found += [line for line in logical_lines(block) if line.startswith(prefix)]
    return found


def one(commands, needle, what):
    matching = [c for c in commands if needle in c]
    if len(matching) != 1:
        fail(f"expected one README command for {what} (with {needle!r}), found {len(matching)}")
    return matching[0]


def sh(command, cwd, env, what, timeout=600):
    """Runs `command` with bash; its stdout."""
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        fail(f"{what}: exit {done.returncode}\n$ {command}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def graphql_answer(text, what):
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        fail(f"{what}: not JSON: {text!r}")
    if answer.get("errors") or not answer.get("data"):
        fail(f"{what}: {json.dumps(answer, indent=2)}")
    return answer["data"]


def post(url, token, query, variables=None):
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


class Server:
    """A `journeymap serve` (or `cargo run … serve`) process and what it printed."""

    def __init__(self, command, cwd, env, what, timeout, log):
        self.what = what
        self.lines = []
        self.log = log
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
            start_new_session=True,
        )
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            fail(f"{what} did not serve within {timeout} s:\n" + "\n".join(self.lines) + "\n" + self.tail())

    def _read(self):
        demo = False
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if "Journeymap is serving the demo clinic" in line:
                demo = True
            if line.startswith("Journeymap is serving at ") or (demo and line.strip().startswith("-d ")):
                self.ready.set()
        self.ready.set()

    def tail(self):
        """The end of its log (stderr: build output and log lines)."""
        return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-40:])

    def printed(self, label):
        for line in self.lines:
            if line.strip().startswith(label):
                return line.strip()[len(label):].strip()
        fail(f"{self.what} printed no {label!r} line:\n" + "\n".join(self.lines))

    def url(self):
        for line in self.lines:
            if line.startswith("Journeymap is serving at "):
                return line.split(" at ", 1)[1].strip().removesuffix("/graphql")
        return self.printed("GraphiQL").split()[0].removesuffix("/graphql")

    def stop(self):
        """Ctrl-C, as the README says; the process must end cleanly."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                code = self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                fail(f"{self.what} did not stop within 60 s of Ctrl-C")
            if code != 0:
                fail(f"{self.what} exited {code} after Ctrl-C:\n" + self.tail())


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records each webhook delivery's headers and raw body; answers 200."""

    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def port_is_free(port):
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main():
    work = Path(tempfile.mkdtemp(prefix="journeymap-readme-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("JOURNEYMAP_") or name == "RUST_LOG":
            del env[name]
    # The release build is shared with the checkout's target directory, so a
    # second run does not build from scratch; the command is as written.
    env["CARGO_TARGET_DIR"] = os.environ.get("README_TARGET_DIR", str(REPO / "target"))
    release = Path(env["CARGO_TARGET_DIR"]) / "release"
    try:
        run(clone, env, release, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"readme: {len(PASSED)} passed, 0 failed", flush=True)


def run(clone, env, release, work):
    first = fenced("sh")[0]
    serve_demo = logical_lines(first)[0].split("#")[0].strip()
    if serve_demo != "cargo run --release -- serve --demo":
        fail(f"the README's first command is now {serve_demo!r}; update this script")
    if not port_is_free(8080):
        fail("127.0.0.1:8080 is taken; the README's first command serves there")

    # 1. The README's first command, exactly, in the fresh clone.
    demo = Server(
        serve_demo, clone, env, "cargo run --release -- serve --demo", timeout=3600, log=work / "demo.log"
    )
    if not (clone / "journeymap.db").exists():
        fail("serve --demo made no journeymap.db in the working directory")
    token = demo.printed("Token")
    if demo.url() != DEMO_URL or not token.startswith("jm_"):
        fail(f"serve --demo printed {demo.url()!r} and token {token!r}")
    passed("cargo run --release -- serve --demo serves the demo clinic and prints a token")

    # The dashboard it prints, with the staff sign-in it prints (the README's
    # Dashboard section: `curl -sI …/dashboard`, then the printed login).
    if demo.printed("Dashboard") != f"{DEMO_URL}/dashboard":
        fail(f"serve --demo printed the dashboard at {demo.printed('Dashboard')!r}")
    sign_in = re.fullmatch(r"clinic (\S+), email (\S+), password (\S+)", demo.printed("Sign in"))
    if not sign_in:
        fail(f"serve --demo printed the sign-in {demo.printed('Sign in')!r}")
    head = sh(one(readme_commands("curl -sI"), "/dashboard", "the dashboard headers"), clone, env, "the dashboard headers").lower()
    for needed in ["200 ok", "content-security-policy: default-src 'none'; script-src 'self'", "x-frame-options: deny", "frame-ancestors 'none'"]:
        if needed not in head:
            fail(f"GET /dashboard lacks {needed!r}:\n{head}")
    request = urllib.request.Request(
        f"{DEMO_URL}/graphql",
        data=json.dumps({
            "query": "mutation($input: LoginInput!) { login(input: $input) { staff { name role } } }",
            "variables": {"input": dict(zip(["clinic", "email", "password"], sign_in.groups()))},
        }).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        staff = json.loads(response.read()).get("data", {}) or {}
    if (staff.get("login") or {}).get("staff", {}).get("role") != "OWNER":
        fail(f"the printed dashboard sign-in does not work: {staff}")
    passed("serve --demo prints the dashboard and an owner's sign-in that works; /dashboard has its strict policy")

    # The "Try it" line it printed.
    after = demo.lines[demo.lines.index("  Try it:") + 1 :]
    if "" in after:
        after = after[: after.index("")]
    try_it = " ".join(l.strip().rstrip("\\") for l in after)
    data = graphql_answer(sh(try_it, clone, env, "the printed Try it command"), "Try it")
    if data["viewer"]["clinic"]["name"] != "Glow Aesthetics & Wellness":
        fail(f"Try it: {data}")
    passed("the curl command serve --demo prints answers with the printed token")

    # 2. The curl examples, with $TOKEN exported as the README says.
    env["TOKEN"] = token
    curls = readme_commands("curl ")
    query = one(curls, "patients(first: 5)", "the first query")
    data = graphql_answer(sh(query, clone, env, "the first query"), "the first query")
    if data["viewer"]["clinic"]["name"] != "Glow Aesthetics & Wellness" or len(data["pathways"]) != 3:
        fail(f"the first query: {data}")
    if data["patients"]["totalCount"] != 600 or len(data["patients"]["edges"]) != 5:
        fail(f"the first query: {data['patients']}")
    pathway = data["pathways"][0]["id"]
    passed("README curl: the pathways and five newest patients")

    mutation = one(curls, "createPatient", "the mutation")
    data = graphql_answer(sh(mutation, clone, env, "the mutation"), "the mutation")
    patient = data["createPatient"]["patient"]
    if not patient["id"].startswith("pat_") or patient["phone"] != "+14155550123":
        fail(f"the mutation: {patient}")
    passed("README curl: register a patient")

    map_query = one(curls, "journeyMap(pathwayId", "the journey map query").replace("pwy_…", pathway)
    data = graphql_answer(sh(map_query, clone, env, "the journey map"), "the journey map")
    if not data["journeyMap"]["stages"]:
        fail(f"the journey map: {data}")
    passed("README curl: the journey map as data")

    picture = one(curls, "map.svg", "the journey map picture").replace("pwy_…", pathway)
    sh(picture, clone, env, "the journey map picture")
    import xml.etree.ElementTree as ET

    root = ET.parse(clone / "map.svg").getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        fail(f"map.svg is a {root.tag}")
    passed("README curl: the journey map as a picture (map.svg is SVG)")

    # Outreach: the coordinator's queue, and a consent recorded for Ana.
    queue = one(curls, "sendable: true", "the coordinator's queue")
    data = graphql_answer(sh(queue, clone, env, "the queue"), "the queue")
    nodes = data["followUps"]["nodes"]
    kinds = {n["kind"] for n in nodes}
    if not nodes or not all(n["explanation"] and n["message"] and n["sendAt"] for n in nodes):
        fail(f"the queue: {data}")
    passed(f"README curl: the coordinator's queue ({data['followUps']['totalCount']} sendable; {', '.join(sorted(kinds))} first)")
    consent = one(curls, "recordConsent", "recording a consent").replace("pat_…", patient["id"])
    data = graphql_answer(sh(consent, clone, env, "recordConsent"), "recordConsent")
    states = data["recordConsent"]["patient"]["contact"]["consents"]
    if {"channel": "EMAIL", "purpose": "MARKETING", "granted": True, "source": "front desk"} not in states:
        fail(f"recordConsent: {states}")
    passed("README curl: record a consent")

    # Interoperability: a CSV dry run, the FHIR metadata and Ana's $everything.
    dry = json.loads(sh(one(curls, "imports/patients?dryRun=true", "the CSV dry run"), clone, env, "the CSV dry run"))
    if (dry["created"], dry["failed"], dry["errors"][0]["line"], dry["errors"][0]["column"]) != (1, 1, 3, "email"):
        fail(f"the CSV dry run: {dry}")
    passed("README curl: a CSV import dry run")
    metadata = json.loads(sh(one(curls, "fhir/metadata", "the FHIR metadata"), clone, env, "the FHIR metadata"))
    if metadata["resourceType"] != "CapabilityStatement":
        fail(f"the FHIR metadata: {metadata}")
    everything = one(curls, "$everything", "the FHIR $everything").replace("pat-…", patient["id"].replace("_", "-", 1))
    bundle = json.loads(sh(everything, clone, env, "the FHIR $everything"))
    if bundle["resourceType"] != "Bundle" or bundle["entry"][0]["resource"]["name"][0]["given"] != ["Ana"]:
        fail(f"the FHIR $everything: {bundle}")
    passed("README curl: FHIR metadata and a patient's $everything")
    bulk_export(curls, clone, env)

    # 3. PASSWORD=$(cargo run --release -q -- staff create …), then sign in.
    create_staff = one(readme_commands("PASSWORD=$("), "staff create", "the staff create line")
    password = sh(f'{create_staff}\nprintf %s "$PASSWORD"', clone, env, "PASSWORD=$(… staff create …)")
    if len(password) < 12 or "\n" in password:
        fail(f"staff create put {password!r} in $PASSWORD")
    env["PASSWORD"] = password
    login = one(curls, "login(input", "the sign-in")
    data = graphql_answer(sh(login, clone, env, "the sign-in"), "the sign-in")
    if data["login"]["staff"] != {"name": "Sam Rivera", "role": "ADMIN"}:
        fail(f"the sign-in: {data}")
    access = data["login"]["accessToken"]
    viewer = post(DEMO_URL, access, "{ viewer { kind staff { name } } }")
    if viewer.get("data", {}).get("viewer", {}).get("kind") != "STAFF":
        fail(f"the access token: {viewer}")
    passed("README: PASSWORD=$(cargo run --release -q -- staff create …) and the sign-in curl")

    # 4. TOKEN=$(journeymap token create --clinic glow --name "HubSpot sync").
    lines = [l for b in README.split("`") for l in [b] if l.startswith("TOKEN=$(journeymap token create")]
    if len(lines) != 1:
        fail(f"expected the README's TOKEN=$(journeymap token create …) example, found {lines}")
    path_env = dict(env, PATH=f"{release}:{env['PATH']}")
    partner = sh(f'{lines[0]}\nprintf %s "$TOKEN"', clone, path_env, lines[0])
    viewer = post(DEMO_URL, partner, "{ viewer { name } }")
    if viewer.get("data", {}).get("viewer", {}).get("name") != "HubSpot sync":
        fail(f"{lines[0]}: {viewer}")
    passed('README: TOKEN=$(journeymap token create --clinic glow --name "HubSpot sync")')
    demo.stop()
    passed("serve --demo stops cleanly on Ctrl-C")

    # 4b. Backups and restore: the README's SQLite lines, in the clone, where
    # the demo's journeymap.db is the default database.
    backup = one(readme_commands("journeymap backup"), "--to journeymap-", "the SQLite backup")
    restore = one(readme_commands("journeymap restore"), "--from", "the restore")
    sh(backup, clone, path_env, backup)
    sh(restore, clone, path_env, restore)
    import sqlite3

    restored = sqlite3.connect(clone / "restored.db")
    checked = restored.execute("PRAGMA integrity_check").fetchall()
    patients = restored.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
    restored.close()
    if checked != [("ok",)] or patients != 601:
        fail(f"the restored database: integrity {checked}, {patients} patients (601 expected)")
    again = subprocess.run(["bash", "-c", restore], cwd=clone, env=path_env, capture_output=True, text=True)
    if again.returncode == 0 or "--force" not in again.stderr:
        fail(f"a second restore over the restored database: exit {again.returncode}, {again.stderr}")
    passed("README: journeymap backup and restore (SQLite): intact, every patient, a second restore refused")

    # 5. Webhooks: the README's endpoint example against a server that may
    # deliver to this machine, then its verification snippets on a delivery.
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/journeymap"
    lab = Server(
        f"{release / 'journeymap'} serve --listen 127.0.0.1:0 --allow-private-webhook-targets",
        clone,
        env,
        "journeymap serve --allow-private-webhook-targets",
        timeout=120,
        log=work / "lab.log",
    )
    endpoint = one(curls, "createWebhookEndpoint", "the webhook endpoint").replace(
        "https://crm.example.com/journeymap", hook_url
    ).replace(DEMO_URL, lab.url())
    data = graphql_answer(sh(endpoint, clone, env, "the webhook endpoint"), "the webhook endpoint")
    secret = data["createWebhookEndpoint"]["secret"]
    if not secret.startswith("whsec_"):
        fail(f"the webhook endpoint: {data}")
    passed("README curl: register a webhook endpoint")
    answer = post(
        lab.url(),
        token,
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        {"input": {"patientId": patient["id"], "kind": "NPS", "score": 9}},
    )
    if answer.get("errors"):
        fail(f"submitFeedback: {answer}")
    deadline = time.time() + 30
    while not Receiver.received and time.time() < deadline:
        time.sleep(0.1)
    if not Receiver.received:
        fail("no webhook delivery within 30 s")
    headers, body = Receiver.received[0]
    if json.loads(body)["type"] != "feedback.submitted":
        fail(f"delivered: {body!r}")
    lab.stop()
    verify_snippets(work, secret, headers, body)

    # 6. The PostgreSQL section.
    postgres_section(clone, env, work)


def bulk_export(curls, clone, env):
    """The README's Bulk Data export: kick-off, poll until 200, one file; then
    every line of the files it lists checked by fhir.resources."""
    head = sh(one(curls, "fhir/$export", "the bulk export kick-off"), clone, env, "the bulk export kick-off")
    if not head.startswith("HTTP/1.1 202"):
        fail(f"the bulk export kick-off: {head}")
    location = re.search(r"^content-location: (\S+)", head, re.M | re.I)
    if not location or "/fhir/bulk-status/exp_" not in location.group(1):
        fail(f"the bulk export kick-off named no status URL: {head}")
    export = location.group(1).rsplit("/", 1)[1]
    poll = one(curls, "fhir/bulk-status/exp_…", "the bulk export poll").replace("exp_…", export)
    deadline = time.time() + 120
    while True:
        answer = sh(poll, clone, env, "the bulk export poll")
        status = answer.splitlines()[0] if answer else ""
        if status.startswith("HTTP/1.1 200"):
            break
        if not status.startswith("HTTP/1.1 202") or "x-progress:" not in answer.lower():
            fail(f"the bulk export poll: {answer}")
        if time.time() > deadline:
            fail("the bulk export never finished")
        time.sleep(0.5)
    manifest = json.loads(re.split(r"\r?\n\r?\n", answer, maxsplit=1)[1])
    types = [o["type"] for o in manifest["output"]]
    if types != ["Patient", "EpisodeOfCare"] or manifest["error"] != [] or not manifest["requiresAccessToken"]:
        fail(f"the bulk export manifest: {manifest}")
    download = one(curls, "fhir/bulk-files/exp_…", "the bulk export file").replace("exp_…", export)
    lines = sh(download, clone, env, "the bulk export file").splitlines()
    if len(lines) != 2 or any(json.loads(l)["resourceType"] != "Patient" for l in lines):
        fail(f"the bulk export file: {lines}")
    everything = []
    for output in manifest["output"]:
        request = urllib.request.Request(output["url"], headers={"Authorization": f"Bearer {env['TOKEN']}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read().decode()
        if body.count("\n") != output["count"]:
            fail(f"{output['url']}: {body.count(chr(10))} lines, the manifest says {output['count']}")
        everything.append(body)
    checked = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fhir" / "validate.py")],
        input="".join(everything),
        capture_output=True,
        text=True,
    )
    if checked.returncode != 0:
        fail(f"fhir.resources refused lines of the bulk export:\n{checked.stdout[-3000:]}{checked.stderr[-3000:]}")
    passed(f"README curl: a Bulk Data export, polled to its manifest, a file downloaded ({checked.stdout.strip().removeprefix('ok ')} resources valid for fhir.resources)")


def verify_snippets(work, secret, headers, body):
    """The README's Node.js and Python `verify`, on the delivery and on a tampered copy."""
    node = [b for b in fenced("js") if "function verify(" in b]
    python = [b for b in fenced("python") if "def verify(" in b]
    if len(node) != 1 or len(python) != 1:
        fail("expected one Node.js and one Python verify snippet in README.md")
    (work / "secret").write_text(secret)
    (work / "headers.json").write_text(json.dumps(headers))
    tampered = body.replace(b'"score":9', b'"score":0')
    if tampered == body:
        fail(f"cannot tamper with {body!r}")
    for name, raw in [("body", body), ("tampered", tampered)]:
        (work / name).write_bytes(raw)

    node_check = work / "verify.mjs"
    node_check.write_text(
        node[0]
        + """
import fs from "node:fs";
const [secret, headers, file] = [fs.readFileSync(process.argv[2], "utf8"), JSON.parse(fs.readFileSync(process.argv[3], "utf8")), process.argv[4]];
console.log(verify(secret, headers, fs.readFileSync(file, "utf8")));
"""
    )
    python_check = work / "verify.py"
    python_check.write_text(
        python[0]
        + """
import json, sys
print(str(verify(open(sys.argv[1]).read(), json.load(open(sys.argv[2])), open(sys.argv[3], "rb").read())).lower())
"""
    )
    for language, command in [("Node.js", ["node", str(node_check)]), ("Python", [sys.executable, str(python_check)])]:
        for name, expected in [("body", "true"), ("tampered", "false")]:
            done = subprocess.run(
                command + [str(work / "secret"), str(work / "headers.json"), str(work / name)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or done.stdout.strip() != expected:
                fail(f"the README's {language} verify on the {name} delivery: {done.stdout}{done.stderr}")
        passed(f"README {language} verify: the real delivery verifies, a tampered one does not")


def postgres_section(clone, env, work):
    """The README's PostgreSQL lines, as written."""
    blocks = [b for b in fenced("sh") if "JOURNEYMAP_DATABASE_URL=postgres://" in b and "serve --demo" in b]
    if len(blocks) != 1:
        fail("expected the README's PostgreSQL block")
    lines = logical_lines(blocks[0])
    url = lines[0].removeprefix("export JOURNEYMAP_DATABASE_URL=")
    database = url.rsplit("/", 1)[1]
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc"]
    exists = subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{database}'"], capture_output=True, text=True)
    if exists.returncode != 0:
        fail(f"cannot reach PostgreSQL: {exists.stderr}")
    if exists.stdout.strip() == "1":
        fail(f"a database {database!r} already exists; the README's PostgreSQL lines would reuse it")
    try:
        server = Server(
            "\n".join(lines), clone, env, "the README's PostgreSQL serve --demo", timeout=1800, log=work / "pg.log"
        )
        token = server.printed("Token")
        answer = post(DEMO_URL, token, "{ viewer { clinic { slug } } patients { totalCount } }")
        if answer.get("data") != {"viewer": {"clinic": {"slug": "glow"}}, "patients": {"totalCount": 600}}:
            fail(f"the PostgreSQL demo: {answer}")
        server.stop()
        passed("README: JOURNEYMAP_DATABASE_URL=postgres://… cargo run --release -- serve --demo")
        # The README's PostgreSQL backup line, on the database just served.
        backup = one(readme_commands("journeymap backup"), "postgres://", "the PostgreSQL backup")
        path_env = dict(env, PATH=f"{Path(env['CARGO_TARGET_DIR']) / 'release'}:{env['PATH']}")
        sh(backup, work, path_env, backup)
        listed = sh("pg_restore --list jm.dump", work, path_env, "pg_restore --list jm.dump")
        if "TABLE DATA public patients" not in listed:
            fail(f"jm.dump lacks the patients: {listed[:2000]}")
        passed("README: journeymap backup --database-url postgres://… (pg_dump archive with the patients)")
    finally:
        subprocess.run(psql + [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'], capture_output=True)


if __name__ == "__main__":
    main()
