#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep init` and `mailkeep-sendmail` (issue 9), no network.

- each provider, with what it needs given (--client-id; --pass-cmd and
  hosts), writes a file that `mailkeep check-config` accepts, as the
  default path (HOME, XDG_CONFIG_HOME, MAILKEEP_CONFIG) or -c FILE;
- the file is 0600 and its missing directories 0700, even under umask 022;
- without --client-id (outlook, office365) or --pass-cmd (custom) the line
  is written commented out, init says so, and check-config fails with exit
  78 naming the missing key and the file's line;
- an existing file is refused (exit 73, unchanged); --force replaces it and
  keeps the old one as FILE.bak;
- the next steps name login (OAuth only), sync and systemctl --user, and
  -c FILE (shell-quoted) when the file is not the default;
- bad arguments are usage errors (64) and write nothing;
- `mailkeep-sendmail` (a symlink, as installed) is `mailkeep sendmail`:
  sendmail's --help, and a message queued with -t shows up in
  `mailkeep outbox ls` (its SMTP server is a closed port: it stays queued).

usage: test_init.py MAILKEEP
"""
import os
import socket
import stat
import subprocess
import sys
import tempfile

MAILKEEP = sys.argv[1]
failures = 0


def check(cond, what, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + what + (": " + str(detail) if detail and not cond else ""), flush=True)
    if not cond:
        failures += 1


def run(args, env, **kw):
    return subprocess.run([MAILKEEP] + args, capture_output=True, text=True, env=env, timeout=30, **kw)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def main():
    tmp = tempfile.mkdtemp(prefix="mk-init-")
    home = os.path.join(tmp, "home")
    os.mkdir(home)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C"}
    os.umask(0o022)

    # ---- outlook at the default path, with a client id
    r = run(["init", "--email", "me@outlook.com", "--client-id", "0a1b2c3d-0000-4000-8000-123456789abc"], env)
    path = os.path.join(home, ".config", "mailkeep", "config")
    check(r.returncode == 0, "init --email me@outlook.com --client-id ID: exit 0", r.stderr)
    check(os.path.exists(path), "written at ~/.config/mailkeep/config")
    check(mode(path) == 0o600, "the file is 0600 (umask 022)", oct(mode(path)))
    check(mode(os.path.dirname(path)) == 0o700 and mode(os.path.join(home, ".config")) == 0o700,
          "its missing directories were created 0700")
    check("provider outlook (guessed" in r.stdout, "outlook guessed from the address", r.stdout)
    text = open(path).read()
    check("[account personal]" in text and "provider = outlook" in text and
          "\noauth_client_id = 0a1b2c3d-0000-4000-8000-123456789abc\n" in text, "account, provider, client id written")
    check(max(len(l) for l in text.splitlines()) < 190, "every line is under the parser's 190 characters")
    c = run(["check-config"], env)
    check(c.returncode == 0 and "account personal" in c.stdout and "smtp-mail.outlook.com" in c.stdout,
          "check-config accepts it (outlook preset)", c.stderr)
    steps = r.stdout.split("Next steps:", 1)[-1]
    check("mailkeep login personal" in steps and "mailkeep sync" in steps and
          "systemctl --user enable --now mailkeep" in steps and " -c " not in steps,
          "next steps: login, sync, systemctl --user (no -c for the default path)", steps)

    # ---- refuses to overwrite, --force keeps .bak
    before = open(path).read()
    r = run(["init", "--email", "other@outlook.com"], env)
    check(r.returncode == 73 and "already exists" in r.stderr and "--force" in r.stderr,
          "an existing file: exit 73, says --force", (r.returncode, r.stderr))
    check(open(path).read() == before, "the existing file is unchanged")
    r = run(["init", "--email", "other@outlook.com", "--force"], env)
    check(r.returncode == 0 and "other@outlook.com" in open(path).read(), "--force replaces it", r.stderr)
    check(os.path.exists(path + ".bak") and open(path + ".bak").read() == before and mode(path + ".bak") == 0o600,
          "--force keeps the old file as config.bak (0600)")
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if ".init-" in f]
    check(not leftovers, "no temporary file left behind", leftovers)

    # ---- no client id: commented out, check-config names it
    r = run(["init", "--email", "me@outlook.com", "--force"], env)
    check(r.returncode == 0 and "set oauth_client_id" in r.stdout, "without --client-id: init says to set it",
          r.stdout)
    check("\n; oauth_client_id = " in open(path).read(), "the oauth_client_id line is commented out")
    c = run(["check-config"], env)
    check(c.returncode == 78 and "oauth_client_id" in c.stderr and path + ":" in c.stderr
          and "Microsoft Entra" in c.stderr,
          "check-config: exit 78 naming oauth_client_id at FILE:LINE, saying where to get one", c.stderr)

    # ---- office365 at $XDG_CONFIG_HOME, guessed from a company domain
    xdg = os.path.join(tmp, "xdg")
    env2 = dict(env, XDG_CONFIG_HOME=xdg)
    r = run(["init", "--email", "me@contoso.com", "--client-id", "0a1b2c3d-0000-4000-8000-123456789abc"], env2)
    p2 = os.path.join(xdg, "mailkeep", "config")
    check(r.returncode == 0 and os.path.exists(p2) and "provider office365 (guessed" in r.stdout,
          "office365 guessed, at $XDG_CONFIG_HOME/mailkeep/config", r.stdout + r.stderr)
    c = run(["check-config"], env2)
    check(c.returncode == 0 and "account work" in c.stdout and "smtp.office365.com" in c.stdout
          and "organizations" in c.stdout, "check-config accepts it (office365 preset)", c.stderr)

    # ---- custom with -c FILE (a name with a space), at $MAILKEEP_CONFIG too
    p3 = os.path.join(tmp, "my dir", "sub", "mail conf")
    r = run(["-c", p3, "init", "--provider", "custom", "--email", "me@example.org", "--name", "lab",
             "--pass-cmd", "echo secret", "--imap-host", "mail.example.org"], env)
    check(r.returncode == 0 and mode(p3) == 0o600 and mode(os.path.dirname(p3)) == 0o700,
          "custom at -c FILE: written 0600 in new 0700 directories", r.stderr)
    c = run(["-c", p3, "check-config"], env)
    check(c.returncode == 0 and "account lab" in c.stdout and "mail.example.org:993" in c.stdout
          and "smtp.example.org:587" in c.stdout, "check-config accepts it (custom; smtp guessed)",
          c.stdout + c.stderr)
    quoted = "'" + p3 + "'"
    check(f"mailkeep -c {quoted} check-config" in r.stdout and f"mailkeep -c {quoted} sync" in r.stdout
          and " login " not in r.stdout.split("Next steps:")[-1] and "MAILKEEP_CONFIG=" in r.stdout,
          "next steps carry -c 'FILE' (quoted), no login for a password account, and how to point the unit at it",
          r.stdout)
    check("smtp.example.org is a guess" in r.stdout and "mail.example.org" not in r.stdout.split("guess")[0],
          "init says which server it guessed (only that one)", r.stdout)
    c = run(["check-config"], dict(env, MAILKEEP_CONFIG=p3))
    check(c.returncode == 0 and "account lab" in c.stdout, "the same file through MAILKEEP_CONFIG")
    p4 = os.path.join(tmp, "nopass")
    r = run(["-c", p4, "init", "--provider", "custom", "--email", "me@example.org"], env)
    c = run(["-c", p4, "check-config"], env)
    check(r.returncode == 0 and "Set pass_cmd" in r.stdout and c.returncode == 78 and "pass_cmd" in c.stderr,
          "custom without --pass-cmd: init says so; check-config exit 78 names pass_cmd", c.stderr)

    # ---- usage errors write nothing
    p5 = os.path.join(tmp, "bad")
    for args, what in ((["init"], "no --email"),
                       (["init", "--email", "not-an-address"], "a bad address"),
                       (["init", "--email", "a@b.org", "--provider", "gmail"], "an unknown provider"),
                       (["init", "--email", "a@b.org", "--name", "my account"], "a bad account name"),
                       (["init", "--email", "a@outlook.com", "--pass-cmd", "x"], "--pass-cmd with outlook"),
                       (["init", "--email", "a@b.org", "--provider", "custom", "--pass-cmd", "a\nb"],
                        "a pass_cmd with a newline"),
                       (["init", "--email", "a@b.org", "--client-id", "x y"], "a bad client id"),
                       (["init", "--email", "a@b.org", "extra"], "an extra argument")):
        r = run(["-c", p5] + args, env)
        check(r.returncode == 64 and not os.path.exists(p5) and r.stderr.startswith("mailkeep: init:"),
              f"init with {what}: exit 64, nothing written", (r.returncode, r.stderr))
    r = run(["init", "--help"], env)
    check(r.returncode == 0 and "--client-id" in r.stdout, "init --help")

    # ---- mailkeep-sendmail is mailkeep sendmail
    link = os.path.join(tmp, "mailkeep-sendmail")
    os.symlink(os.path.abspath(MAILKEEP), link)
    r = subprocess.run([link, "--help"], capture_output=True, text=True, env=env)
    check(r.returncode == 0 and r.stdout.startswith("usage: mailkeep sendmail"),
          "mailkeep-sendmail --help is sendmail's", r.stdout[:80])
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()  # nobody listens there now
    cfg = os.path.join(tmp, "send.conf")
    with open(cfg, "w") as f:
        f.write(f"[defaults]\nstore = {tmp}/store\n[account out]\nemail = me@example.org\nauth = plain\n"
                f"pass_cmd = echo pw\nsmtp_host = 127.0.0.1\nsmtp_port = {closed}\n")
    os.chmod(cfg, 0o600)
    msg = "From: me@example.org\nTo: you@example.org\nSubject: via the symlink\n\nhello\n"
    r = subprocess.run([link, "-t", "-oi"], input=msg, capture_output=True, text=True,
                       env=dict(env, MAILKEEP_CONFIG=cfg), timeout=60)
    check(r.returncode == 0, "mailkeep-sendmail -t -oi < message: exit 0 (queued)", r.stderr)
    o = run(["-c", cfg, "outbox", "ls"], env)
    check("via the symlink" in o.stdout and "queued" in o.stdout and "you@example.org" in o.stdout,
          "the message is in the outbox, queued", o.stdout + o.stderr)
    r = subprocess.run([link, "-q", "x@example.org"], input=msg, capture_output=True, text=True,
                       env=dict(env, MAILKEEP_CONFIG=cfg))
    check(r.returncode == 64 and "unknown option" in r.stderr, "mailkeep-sendmail parses sendmail's options, not ours")

    print(f"{failures} failure(s)")
    subprocess.run(["rm", "-rf", tmp])
    return 1 if failures else 0


sys.exit(main())
