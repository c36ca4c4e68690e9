"""What ``deployproof --help`` and each ``deployproof COMMAND --help`` say below the options:
examples, the ``--json`` document's fields, and the exit codes (read off the command modules).

Kept apart from the parsers so the commands stay readable; ``cli._document`` attaches them.
"""

from __future__ import annotations

__all__ = ["EPILOGS", "EXIT_CODES"]

EXIT_CODES = """\
exit codes:
  0  done (for check: every inventory file is valid)
  1  failed: an inventory file is invalid (check); no good version (history --last-good,
     rollback --last-good); a rollback or restore was refused or is not sound; no release
     tag could be made (version, promote); the host could not be read or what was found
     does not validate (discover)
  2  usage: a wrong argument, an unknown environment or stack, an inventory that does not
     load, a server or hook that is not configured (comment, webhook, runner)
  comment exits with the code of the pytest run it started: 1 a check failed, 4 usage or
  inventory error, 5 no tests collected, 6 inconclusive (a deploy held, nothing checked)
--json changes what is printed, never the exit code; on exit 2 nothing is printed on stdout.

examples:
  deployproof check
  deployproof history --env staging web --json
  deployproof rollback --env production web --last-good
  eval "$(deployproof completion bash)"
"""


EPILOGS = {
    "check": """\
examples:
  deployproof check                              # every environment in inventories/
  deployproof check --inventory inv/ --env staging --env production
  deployproof check --json | jq '.[] | select(.ok | not)'

--json prints a list, one object per environment file:
  [{"env": "staging", "path": "inventories/staging.yml", "ok": true,
    "stacks": 3, "hosts": 1, "error": null}, ...]
  an invalid file has "ok": false, "stacks" and "hosts" null and "error" its problems.
""",
    "schema": """\
example:
  deployproof schema > inventory.schema.json     # for editors: yaml-language-server
""",
    "history": """\
examples:
  deployproof history --env staging              # every stack, the last 50 lines
  deployproof history --env staging web --status fail
  deployproof history --env production web --last-good
  deployproof history --env staging web --json

--json prints a list of entries, oldest first (notes are masked when written):
  [{"timestamp": "2026-01-30T10:00:00Z", "stack": "web", "env": "staging",
    "action": "deploy", "version": "v1.4.0", "status": "success", "notes": ""}, ...]
with --last-good: that one entry, or null (exit 1) when there is none.
""",
    "rollback": """\
examples:
  deployproof rollback --env staging web --list
  deployproof rollback --env staging web --last-good
  deployproof rollback --env staging web v1.4.0 --lock-wait 60
  deployproof rollback --env staging web --list --json

--json (with --list) prints the versions that ran successfully, newest first:
  [{"version": "v1.4.0", "running": true}, {"version": "v1.3.2", "running": false}, ...]
""",
    "restore": """\
examples:
  deployproof restore --env staging web --list
  deployproof restore --env staging web                    # the newest backup
  deployproof restore --env staging web 20261129T164246Z
  deployproof restore --env staging web --list --json

--json (with --list) prints the stack's backups, oldest first:
  [{"name": "20261129T164246Z", "version": "v1.4.0", "created": "2026-11-29T16:42:46+00:00",
    "files": 3, "bytes": 52311}, ...]
""",
    "comment": """\
example (GitHub Actions, on: issue_comment):
  deployproof comment --event "$GITHUB_EVENT_PATH"

exits 0 when it ignored, refused or answered the comment; else with the code of the
pytest run it started (1 failed, 4 usage or inventory error, 6 held or nothing checked).
""",
    "webhook": """\
example:
  DEPLOYPROOF_WEBHOOK_SECRET=... deployproof webhook serve --port 8080 \\
      --repository owner/name
""",
    "version": """\
examples:
  deployproof version next --env staging          # v1.4.0 -> v1.4.1
  deployproof version next --env production       # v1.4.0 -> v1.5.0
  deployproof version next --env production --hotfix
""",
    "promote": """\
examples:
  deployproof promote                              # the latest staging tag
  deployproof promote --from v1.4.1                 # tags v1.5.0 on its commit
""",
    "verified": """\
examples:
  deployproof verified --env staging web
  deployproof verified --env staging web --json

--json prints what the environment verified for the stack, newest first:
  [{"version": "v1.4.0", "verified_at": "2026-11-29T16:42:46Z",
    "images": {"ghcr.io/acme/web:v1.4.0": ["sha256:...", "ghcr.io/acme/web@sha256:..."]}}, ...]
  (each image's identity: its engine id, then the registry digests the engine knows)
""",
    "affected": """\
examples:
  deployproof affected --env staging --since origin/main
  deployproof affected --env staging --since HEAD~3 --json

--json prints one object:
  {"stacks": ["api", "web"], "skipped": {"bootstrap/main.tf": "applied manually"}}
""",
    "runner": """\
example:
  DEPLOYPROOF_RUNNER_SECRET=... deployproof runner serve --env staging --stack web --port 8081
""",
    "lock": """\
examples:
  deployproof lock --env staging web               # who holds it
  deployproof lock --env staging web --break
""",
    "completion": """\
examples:
  eval "$(deployproof completion bash)"            # in ~/.bashrc
  deployproof completion zsh > "${fpath[1]}/_deployproof"
""",
}
