#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The man pages against the program (issue 9).

- mailkeep.conf(5): the keys under .SH KEYS are exactly the keys of
  mk__config_keys in config/presets.c (every accepted key documented, every
  documented key accepted, checked once more by `mailkeep check-config` on
  a file using each documented key), each with a "Default:" or a "Required"
  or a "defaults only"/"account only" note, and the three presets;
- mailkeep(1): every command of `mailkeep help` has its .SS, every .SS is a
  command, every option that `mailkeep CMD --help` prints appears in that
  command's section, every exit code of agent/cli.h is under EXIT STATUS;
- both render without a warning: groff -ww -man -z, man --warnings -l and
  mandoc -T lint.

usage: test_man.py MAILKEEP SRCDIR BUILDDIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

MAILKEEP, SRC, BUILD = sys.argv[1], sys.argv[2], sys.argv[3]
MAN1 = os.path.join(BUILD, "man", "mailkeep.1")
MAN5 = os.path.join(BUILD, "man", "mailkeep.conf.5")
failures = 0


def check(cond, what, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + what + (": " + detail if detail and not cond else ""), flush=True)
    if not cond:
        failures += 1


def plain(roff):
    """roff text to words: \\- to -, font escapes and quotes removed."""
    s = roff.replace("\\-", "-").replace("\\&", "")
    s = re.sub(r"\\f[BIRP]", "", s)
    return s


def sections(text, level):
    """{heading: body} for .SH (level "SH") or .SS headings."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^\.(SH|SS)\s+\"?(.*?)\"?\s*$", line)
        if m and m.group(1) == level:
            cur = m.group(2)
            out[cur] = []
        elif m and level == "SS" and m.group(1) == "SH":
            cur = None
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def sh_block(text, name):
    """The lines of one .SH section, up to the next .SH."""
    m = re.search(r"^\.SH " + re.escape(name) + r"\s*$(.*?)(?=^\.SH |\Z)", text, re.M | re.S)
    return m.group(1) if m else ""


# ---------------------------------------------------------------- keys
presets = open(os.path.join(SRC, "config", "presets.c")).read()
table = re.search(r"mk__config_keys\[[A-Z_]*\]\s*=\s*\{(.*?)\n\};", presets, re.S)
check(table is not None, "config/presets.c: the mk__config_keys table found")
code_keys = set(re.findall(r'\]\s*=\s*\{\s*"([a-z0-9_]+)"', table.group(1) if table else ""))
check(len(code_keys) >= 30, f"{len(code_keys)} keys in the parser's table")
for k in ("max_per_minute", "max_per_day", "max_smtp_connections", "max_queue_age", "save_sent",
          "server_saves_sent", "oauth_client_id", "oauth_tenant", "oauth_authority", "oauth_scopes",
          "token_cmd", "token_cmd_cache"):
    check(k in code_keys, f"the parser's table has {k}")

man5 = open(MAN5).read()
keys_block = sh_block(man5, "KEYS")
entries = re.findall(r"^\.TP\n\.B ([a-z0-9_]+)\n(.*?)(?=^\.TP|^\.SS|\Z)", keys_block, re.M | re.S)
doc_keys = {k for k, _ in entries}
check(doc_keys == code_keys, "mailkeep.conf(5) documents exactly the accepted keys",
      f"undocumented: {sorted(code_keys - doc_keys)}, documented but not accepted: {sorted(doc_keys - code_keys)}")
check(len(entries) == len(doc_keys), "each key is documented once")
no_default = [k for k, body in entries
              if not re.search(r"Default:|Required|defaults only|account only", plain(body))]
check(not no_default, "every key says its default (or that it is required)", str(no_default))
presets_block = sh_block(man5, "PRESETS")
for p in ("outlook", "office365", "custom"):
    check(re.search(r"^\.B " + p + "$", presets_block, re.M) is not None, f"preset {p} described")
for host in ("outlook.office365.com", "smtp-mail.outlook.com", "smtp.office365.com"):
    check(host in plain(presets_block), f"preset host {host} named")

# every documented key is accepted by the real parser: one file using each
# (values that pass the per-key checks; the whole file must load)
values = {
    "store": "~/store", "compress_level": "6", "provider": "custom", "email": "me@example.org",
    "user": "me", "auth": "xoauth2", "imap_host": "imap.example.org", "imap_port": "993",
    "imap_tls": "implicit", "pop3_host": "pop3.example.org", "pop3_port": "995", "pop3_tls": "implicit",
    "smtp_host": "smtp.example.org", "smtp_port": "587", "smtp_tls": "starttls",
    "tls_ca_file": "/etc/ssl/certs/ca-certificates.crt",
    "tls_fingerprint": "sha256/" + "A" * 43 + "=", "timeout": "30", "max_connections": "4",
    "folders": "* !Calendar*", "fetch": "both", "pop3_delete": "never", "idle": "INBOX",
    "poll_interval": "15m", "idle_refresh": "10m", "max_per_minute": "30", "max_per_day": "300",
    "max_smtp_connections": "3", "max_queue_age": "5d", "save_sent": "no", "server_saves_sent": "Sent",
    "oauth_client_id": "0a1b2c3d-0000-4000-8000-123456789abc", "oauth_tenant": "consumers",
    "oauth_authority": "https://login.microsoftonline.com", "oauth_scopes": "offline_access x",
    "token_cmd_cache": "5m",
}
# exclusive pairs go to a second account
second = {"password": "pw", "pass_cmd": "echo pw", "token_cmd": "echo token"}
missing = sorted(doc_keys - set(values) - set(second))
check(not missing, "the test has a value for every documented key", str(missing))
with tempfile.TemporaryDirectory() as tmp:
    lines = ["[defaults]"] + [f"{k} = {values[k]}" for k in ("store", "compress_level")]
    lines += ["[account a]"] + [f"{k} = {v}" for k, v in values.items() if k not in ("store", "compress_level")]
    lines += ["[account b]", "email = b@example.org", "imap_host = imap.example.org", "auth = plain",
              "password = pw"]
    lines += ["[account c]", "email = c@example.org", "imap_host = imap.example.org", "auth = plain",
              "pass_cmd = echo pw"]
    lines += ["[account d]", "email = d@example.org", "provider = outlook", "token_cmd = echo token"]
    cfg = os.path.join(tmp, "config")
    with open(os.path.join(tmp, "config"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(cfg, 0o600)
    r = subprocess.run([MAILKEEP, "-c", cfg, "check-config"], capture_output=True, text=True,
                       env=dict(os.environ, HOME=tmp))
    check(r.returncode == 0, "check-config accepts a file using every documented key", r.stderr.strip())

# ---------------------------------------------------------------- commands
man1 = open(MAN1).read()
help_text = subprocess.run([MAILKEEP, "help"], capture_output=True, text=True).stdout
cmd_block = help_text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
help_cmds = re.findall(r"^  ([a-z][a-z-]*)", cmd_block, re.M)
check(len(help_cmds) >= 18, f"`mailkeep help` lists {len(help_cmds)} commands")
for c in ("init", "sendmail", "outbox", "login", "token", "check-config"):
    check(c in help_cmds, f"`mailkeep help` lists {c}")
ss = sections(man1, "SS")
ss_cmds = set(ss)
for c in help_cmds:
    check(c in ss_cmds, f"mailkeep(1) documents `{c}`")
for c in sorted(ss_cmds - set(help_cmds)):
    check(False, f"mailkeep(1) has a section for `{c}`, which `mailkeep help` does not list")
for c in help_cmds:
    if c == "help":
        continue
    r = subprocess.run([MAILKEEP, c, "--help"], capture_output=True, text=True)
    check(r.returncode == 0, f"mailkeep {c} --help exits 0")
    opts = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", r.stdout.split("\n", 1)[0] + "\n" +
                          "\n".join(l for l in r.stdout.splitlines() if l.lstrip().startswith("-"))))
    opts -= {"-h", "--help", "-c", "-v", "-q"}  # global, documented under OPTIONS
    body = plain(ss.get(c, ""))
    absent = sorted(o for o in opts if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", body))
    check(not absent, f"mailkeep(1) `{c}` names every option of `mailkeep {c} --help`", str(absent))
for o in ("--config", "--verbose", "--quiet", "--version", "--help"):
    check(o in plain(sh_block(man1, "OPTIONS")), f"global option {o} documented")

# ---------------------------------------------------------------- exit codes
cli_h = open(os.path.join(SRC, "agent", "cli.h")).read()
codes = sorted(set(int(n) for n in re.findall(r"MK_EXIT_[A-Z]+ = (\d+)", cli_h)))
exit_block = sh_block(man1, "EXIT STATUS")
doc_codes = set(int(n) for n in re.findall(r"^\.B (\d+)$", exit_block, re.M))
check(set(codes) <= doc_codes, f"every exit code of agent/cli.h ({codes}) is under EXIT STATUS",
      str(sorted(set(codes) - doc_codes)))
check(doc_codes <= set(codes), "EXIT STATUS lists no code cli.h lacks", str(sorted(doc_codes - set(codes))))

# ---------------------------------------------------------------- rendering
for page in (MAN1, MAN5):
    name = os.path.basename(page)
    check("@MK_VERSION@" not in open(page).read(), f"{name}: version substituted")
    r = subprocess.run(["groff", "-ww", "-man", "-z", page], capture_output=True, text=True)
    check(r.returncode == 0 and r.stderr == "", f"{name}: groff -ww -man -z is silent", r.stderr.strip())
    r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
    check(r.returncode == 0 and r.stderr == "" and "mailkeep" in r.stdout,
          f"{name}: man --warnings -l renders it without a warning", r.stderr.strip())
    r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode == 0 and out == "", f"{name}: mandoc -T lint -W warning is silent", out)

print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
