#!/usr/bin/env python3
"""Screenshots of every page of the web UI (issue 21), refreshed by running this script.

Starts the real `datakit-ci` binary on a sample repository whose pipeline file has passing,
failing, running and waiting jobs with `needs`, drives headless Chromium through chromedriver
(WebDriver over plain HTTP), and writes PNGs into `docs/screenshots/`: the dashboard, the
branch, PR and tag lists, target pages (with the needs graph, a job's trend), a failed job's
log, a running log, a recorded state, the commit page, login, profile and settings pages. Each
page is taken in the light theme; a few also in the dark one and at a phone's width.

Usage:  scripts/screenshots.py [--binary PATH] [--out DIR]
Needs:  git, chromium and chromedriver (Debian: apt-get install chromium chromium-driver), and
        the binary (default: `target/debug/datakit-ci` under CARGO_TARGET_DIR or ./target;
        build it with `cargo build -p datakit-ci`).
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIPELINE_OK = """steps:
  build:
    run: |
      echo "=== Compile"
      echo "[2026-12-07 18:00.00] Running make"
      for i in 1 2 3 4 5; do echo "compiling module $i"; done
      echo "=== Link"
      echo "linking datakit-ci"
      echo "[2026-12-07 18:01.12] done"
  test:
    run: |
      echo "running 42 tests"
      for i in $(seq 1 42); do echo "test case_$i ... ok"; done
      echo "test result: ok. 42 passed; 0 failed"
    needs: [build]
  lint:
    run: echo "no warnings"
  docs:
    run: echo "docs built"
    needs: [build]
  deploy:
    run: echo deploying
    needs: [test, docs]
    manual: true
"""

PIPELINE_BROKEN = PIPELINE_OK.replace(
    'echo "test result: ok. 42 passed; 0 failed"',
    'echo "test case_43 ... FAILED"; echo "error: assertion failed: left == right"; '
    'echo "  left: 3, right: 4"; echo "test result: FAILED. 42 passed; 1 failed"; exit 1',
)

PIPELINE_SLOW = PIPELINE_OK.replace(
    'for i in 1 2 3 4 5; do echo "compiling module $i"; done',
    'for i in 1 2 3 4 5; do echo "compiling module $i"; done; echo "waiting for a slow linker"; sleep 600',
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(repo, *args, env=None):
    full_env = dict(os.environ, GIT_AUTHOR_NAME="Ada Lovelace", GIT_AUTHOR_EMAIL="ada@example.org",
                    GIT_COMMITTER_NAME="Ada Lovelace", GIT_COMMITTER_EMAIL="ada@example.org")
    if env:
        full_env.update(env)
    subprocess.run(["git", "-C", repo, *args], check=True, env=full_env,
                   stdout=subprocess.DEVNULL)


def commit_pipeline(repo, text, message):
    with open(os.path.join(repo, ".datakit-ci.yml"), "w") as file:
        file.write(text)
    git(repo, "add", ".datakit-ci.yml")
    git(repo, "commit", "-q", "-m", message)


def sample_repository(repo):
    """main (passing, two commits, with history), feature/broken (a failing test),
    feature/slow (a build still running), tag v1.0."""
    os.makedirs(repo)
    git(repo, "init", "-q", "-b", "main")
    with open(os.path.join(repo, "README.md"), "w") as file:
        file.write("# sample\n")
    git(repo, "add", "README.md")
    commit_pipeline(repo, PIPELINE_OK, "Add the pipeline")
    git(repo, "tag", "v1.0")
    git(repo, "checkout", "-q", "-b", "feature/broken")
    commit_pipeline(repo, PIPELINE_BROKEN, "Add test case 43")
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "feature/slow")
    commit_pipeline(repo, PIPELINE_SLOW, "Use the slow linker")
    git(repo, "checkout", "-q", "main")


class WebDriver:
    """The few WebDriver commands this script needs, over HTTP."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            # A running build's log page never finishes loading: wait for elements instead.
            "pageLoadStrategy": "none",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--force-device-scale-factor=1"]},
        }}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"WebDriver {method} {path}: {error.read().decode()}") from error

    def command(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def goto(self, url):
        self.command("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def find(self, css):
        return self.command("POST", "/element", {"using": "css selector", "value": css})

    def type_into(self, css, text):
        element = self.find(css)
        element_id = next(iter(element.values()))
        self.command("POST", f"/element/{element_id}/value", {"text": text})

    def click(self, css):
        element = self.find(css)
        element_id = next(iter(element.values()))
        self.command("POST", f"/element/{element_id}/click", {})

    def size(self, width, height):
        self.command("POST", "/window/rect", {"width": width, "height": height})

    def dark(self, on):
        features = [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]
        self.command("POST", "/goog/cdp/execute",
                     {"cmd": "Emulation.setEmulatedMedia", "params": {"features": features}})

    def screenshot(self, path, width):
        # The whole page: as tall as its content (capped), then the viewport's picture.
        height = self.script("return document.documentElement.scrollHeight;")
        self.size(width, max(400, min(int(height) + 20, 2400)))
        time.sleep(0.3)
        png = base64.b64decode(self.command("GET", "/screenshot"))
        with open(path, "wb") as file:
            file.write(png)

    def quit(self):
        self.call("DELETE", f"/session/{self.session}")


def wait_for(what, condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    parser.add_argument("--binary", default=os.path.join(target_dir, "debug", "datakit-ci"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    args = parser.parse_args()
    for tool in ("git", "chromium", "chromedriver"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing (apt-get install git chromium chromium-driver)")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"no binary at {args.binary}: run `cargo build -p datakit-ci` or pass --binary")
    os.makedirs(args.out, exist_ok=True)

    work = tempfile.mkdtemp(prefix="datakit-ci-screenshots-")
    processes = []
    driver = None
    try:
        repo = os.path.join(work, "sample")
        sample_repository(repo)
        port, driver_port = free_port(), free_port()
        site = f"http://127.0.0.1:{port}"
        log = open(os.path.join(work, "ci.log"), "w")
        ci = subprocess.Popen(
            [args.binary, "--repo", f"me/sample={repo}", "--state-dir", os.path.join(work, "state"),
             "--listen", f"{site}", "--web-ui", f"{site}/", "--jobs", "3"],
            stdout=log, stderr=subprocess.STDOUT)
        processes.append(ci)
        chromedriver = subprocess.Popen(["chromedriver", f"--port={driver_port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(chromedriver)

        def intro_url():
            with open(os.path.join(work, "ci.log")) as file:
                match = re.search(r"open (\S+/auth/intro/\S+) to set", file.read())
            return match.group(1) if match else None

        wait_for("the CI's first-run link", intro_url)
        wait_for("the web UI", lambda: get_json(f"{site}/api/v1/projects") is not None)

        def settled():
            main = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/main")
            broken = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/feature/broken")
            slow = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/feature/slow")
            states = {job["name"]: job["state"] for job in main["jobs"]}
            return (states.get("test") == "success"
                    and any(job["name"] == "test" and job["state"] == "failure" for job in broken["jobs"])
                    and any(job["name"] == "build" and job["logs"] and job["logs"][0]["kind"] == "live"
                            for job in slow["jobs"]))

        wait_for("the sample's builds", settled, timeout=300)
        # A second commit on main, so that its history and trend have more than one state.
        with open(os.path.join(repo, "README.md"), "a") as file:
            file.write("More words.\n")
        git(repo, "commit", "-q", "-am", "Explain more")
        wait_for("main's second build", lambda: any(
            state["source_commit"] != get_json(f"{site}/api/v1/history/me/sample/ref/heads/main")["states"][-1]["source_commit"]
            for state in get_json(f"{site}/api/v1/history/me/sample/ref/heads/main")["states"]) and settled(),
            timeout=300)

        wait_for("chromedriver", lambda: socket.create_connection(("127.0.0.1", driver_port), 1).close() is None)
        driver = WebDriver(driver_port)
        width = 1280
        taken = []

        def shot(name, path, ready=None, dark=False, phone=False):
            driver.dark(dark)
            shot_width = 390 if phone else width
            driver.size(shot_width, 900)
            driver.goto(site + path)
            if ready:
                wait_for(f"{ready} on {path}", lambda: driver.find(ready) is not None, timeout=30)
            time.sleep(0.5)
            file = os.path.join(args.out, f"{name}.png")
            driver.screenshot(file, shot_width)
            taken.append(file)

        # Before logging in.
        shot("login", "/auth/login", "form.login-form")
        # The first-run link logs in as admin; set the password.
        driver.goto(intro_url())
        wait_for("the setup page", lambda: driver.find("#field-password") is not None)
        driver.type_into("#field-password", "screenshots-password")
        driver.type_into("#field-password2", "screenshots-password")
        driver.click("form button[type=submit]")
        wait_for("the password to be set", lambda: driver.script("return location.pathname;") != "/auth/setup"
                 and driver.script("return document.readyState;") == "complete", timeout=30)
        driver.goto(site + "/auth/login")
        wait_for("the login page", lambda: driver.find("form.login-form") is not None)
        driver.type_into("#field-user", "admin")
        driver.type_into("#field-password", "screenshots-password")
        driver.click("form.login-form button[type=submit]")
        wait_for("the login", lambda: "admin" in driver.script(
            "return document.querySelector('.navbar-right') ? document.querySelector('.navbar-right').textContent : '';"),
            timeout=30)

        history = get_json(f"{site}/api/v1/history/me/sample/ref/heads/main")["states"]
        broken = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/feature/broken")
        failed_log = next(log["url"] for job in broken["jobs"] if job["name"] == "test"
                          for log in job["logs"] if log["kind"] == "saved")
        slow = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/feature/slow")
        live_log = next(log["url"] for job in slow["jobs"] if job["name"] == "build"
                        for log in job["logs"] if log["kind"] == "live")
        head = get_json(f"{site}/api/v1/targets/me/sample/ref/heads/main")["head"]

        shot("dashboard", "/", "#live")
        shot("dashboard-dark", "/", "#live", dark=True)
        shot("branches", "/branch", "#live")
        shot("branches-failing-first", "/branch?sort=failing&state=", "#live")
        shot("pull-requests", "/pr", "#live")
        shot("tags", "/tag", "#live")
        shot("target-main", "/me/sample/ref/heads/main", "svg.pipeline-graph")
        shot("target-main-dark", "/me/sample/ref/heads/main", "svg.pipeline-graph", dark=True)
        shot("target-main-phone", "/me/sample/ref/heads/main", "#live", phone=True)
        shot("target-broken", "/me/sample/ref/heads/feature/broken", "svg.pipeline-graph")
        shot("target-running", "/me/sample/ref/heads/feature/slow", "span.phase-running")
        shot("job-trend", "/me/sample/ref/heads/main?test=build#trend", "svg.trend")
        shot("recorded-state", f"/me/sample/ref/heads/main?history={history[-1]['commit']}", "table.results")
        shot("commit", f"/me/sample/commit/{head}", "body")
        shot("log-failed", failed_log.replace(site, "") +
             "?target=%2Fme%2Fsample%2Fref%2Fheads%2Ffeature%2Fbroken&job=test", "div.log-text")
        shot("log-failed-dark", failed_log.replace(site, "") +
             "?target=%2Fme%2Fsample%2Fref%2Fheads%2Ffeature%2Fbroken&job=test", "div.log-text", dark=True)
        shot("log-running", live_log.replace(site, "") +
             "?target=%2Fme%2Fsample%2Fref%2Fheads%2Ffeature%2Fslow&job=build", "div.log-text")
        shot("profile", "/user/profile", "body")
        shot("settings", "/settings", "body")
        shot("settings-users", "/settings/users", "body")
        shot("settings-github-auth", "/settings/github-auth", "body")
        for file in taken:
            print(os.path.relpath(file, ROOT))
    finally:
        if driver is not None:
            try:
                driver.quit()
            except (OSError, RuntimeError):
                pass
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
