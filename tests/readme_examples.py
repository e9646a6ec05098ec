#!/usr/bin/env python3
"""The README's examples and facts, checked against a real run (issue 17), so they cannot drift.

    tests/readme_examples.py --host DIR --port PORT [--cargo-log FILE]

Run from the repository's root by scripts/test.sh, on its pg_regress cluster (the stand-in model
pinned). An HTML comment in README.md, invisible when rendered, marks each checked example; it
applies to the next fenced block, a ```sql block:

  <!-- check: run -->        run it (psql, ON_ERROR_STOP): it must succeed
  <!-- check: output -->     run it; its output must equal the fenced block that follows it
                            (a last line "..." there: the output must start with the lines before)
  <!-- check: json-keys -->  run it; it prints one JSON object whose keys (nested too) must be the
                            keys of the ```json block that follows (the values vary from run to run)
  <!-- check: demo -->      (a plain block, not SQL) scripts/demo.sh's output for some of its
                            queries: the demo's table is loaded as the demo does (sql/recipe_schema.sql,
                            demo/load.sql) and demo/search.sql must print the same

run/output/json-keys blocks run in README order in one database, as a reader would type them.
Also checked: the SQL API contract (issue 25): the README's Functions table has one row per
function of the installed extension in its own schema and per trigger function, with the
catalog's arguments and defaults, result type, volatility, strictness and parallel safety, and
names every other function of uhok_embed_internal; its SQLSTATE table lists every SQLSTATE the
extension's code raises (src/*.rs, sql/sync.sql, sql/search.sql, named through PostgreSQL's
errcodes.txt). Every file of scripts/, bench/, demo/, tests/ (its scripts), sql/ (but the
versioned scripts), src/ and crates/embed-core/src/ is named in the README (its Layout section
says what each is), and, with --cargo-log, the number of texts the compact tokenizer test
compared is the number the README states.
"""
import argparse
import json
import os
import re
import subprocess
import sys

# The examples marked today; fewer means a marker was lost.
MIN_MARKED = 8
MARK = re.compile(r"^<!-- check: (run|output|json-keys|demo) -->$")
FENCE = re.compile(r"^```(\w*)$")


def blocks(lines):
    """Yields (kind, sql_or_text, expected, line_number) for each marked example."""
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i])
        if not m:
            i += 1
            continue
        kind, start = m.group(1), i + 1
        body, i = fenced(lines, i + 1)
        expected = None
        if kind in ("output", "json-keys"):
            expected, i = fenced(lines, i)
        yield kind, body, expected, start
    return


def fenced(lines, i):
    """The fenced block starting at or after line i (blank lines skipped): (its text, next line)."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or not FENCE.match(lines[i]):
        sys.exit(f"README.md:{i + 1}: a check marker must be followed by a fenced block")
    end = i + 1
    while end < len(lines) and lines[end] != "```":
        end += 1
    return "\n".join(lines[i + 1:end]), end + 1


class Checks:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, description, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok: {description}")
        else:
            self.failed += 1
            print(f"  FAILED: {description}")
            if detail:
                print("    " + detail.replace("\n", "\n    "))


def psql(args, database, sql, *extra):
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", args.host, "-p", str(args.port),
               "-U", "postgres", "-d", database, *extra]
    done = subprocess.run(command, input=sql, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def same_output(expected, actual):
    """psql's output as the README shows it: cell for cell (psql pads cells to the widest), and
    numbers within one unit of their last printed digit (other CPUs' kernels may round the last
    bits of a distance differently)."""
    want = [cells(line) for line in expected.splitlines()]
    got = [cells(line) for line in actual.rstrip("\n").splitlines()]
    if want and want[-1] == ["..."]:
        want = want[:-1]
        got = got[:len(want)]
    return len(want) == len(got) and all(
        len(w) == len(g) and all(same_cell(a, b) for a, b in zip(w, g)) for w, g in zip(want, got))


def cells(line):
    if re.fullmatch(r"[-+]+", line.strip()):
        return ["---"]
    return [cell.strip() for cell in line.split("|")]


def same_cell(want, got):
    if want == got:
        return True
    # Only decimals: an id, a rank or a count must be exact.
    number = r"-?\d+\.(\d+)"
    w, g = re.fullmatch(number, want), re.fullmatch(number, got)
    if not (w and g):
        return False
    unit = 10 ** -len(w.group(1))
    return abs(float(want) - float(got)) <= max(unit, 1e-6)


def keys(value, prefix=""):
    if not isinstance(value, dict):
        return set()
    out = set()
    for k, v in value.items():
        out.add(prefix + k)
        out |= keys(v, prefix + k + ".")
    return out


def diff(expected, actual):
    return "expected:\n" + expected + "\nactual:\n" + actual


FUNCTIONS = """
SELECT p.pronamespace::regnamespace::text, p.proname, p.prokind, pg_get_function_arguments(p.oid),
       coalesce(pg_get_function_result(p.oid), ''), p.provolatile, p.proisstrict, p.proparallel,
       e.extnamespace = p.pronamespace
FROM pg_extension e
JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
                AND d.classid = 'pg_proc'::regclass
JOIN pg_proc p ON p.oid = d.objid
WHERE e.extname = 'uhok_embed' ORDER BY 1, 2, 4
"""
VOLATILITY = {"i": "IMMUTABLE", "s": "STABLE", "v": "VOLATILE"}


def contract(args, db, readme, checks):
    """The Functions table against the catalog, the SQLSTATE table against the code."""
    rows = {}
    for line in readme.splitlines():
        m = re.match(r"^\| `(?:CALL )?([^`]+\))` \| *(`[^|]*`|) *\| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip("`"), m.group(3))
    status, out, err = psql(args, db, FUNCTIONS, "-At", "-F", "\t")
    checks.check("the catalog lists the extension's functions", status == 0 and out.strip(), err)
    documented, problems = set(), []
    for line in out.strip().splitlines():
        schema, name, kind, arguments, result, volatility, strict, parallel, own_schema = line.split("\t")
        qualified = name if own_schema == "t" else f"{schema}.{name}"
        if own_schema != "t" and result != "trigger":
            if f"`{qualified}" not in readme and f"`{name}(" not in readme:
                problems.append(f"{qualified} is not named in the README")
            continue
        signature = f"{qualified}({arguments})"
        documented.add(signature)
        if signature not in rows:
            problems.append(f"no row for {signature}")
            continue
        shown, text_ = rows[signature]
        if shown != ("" if kind == "p" else result):
            problems.append(f"{signature}: returns {result!r}, the README says {shown!r}")
        if kind == "f" and result != "trigger":
            for word, applies in ((VOLATILITY[volatility], True), ("STRICT", strict == "t"),
                                  ("PARALLEL SAFE", parallel == "s")):
                if applies != (word in text_):
                    problems.append(f"{signature}: the catalog {'says' if applies else 'does not say'} {word}")
    stale = [sig for sig in rows if sig.split("(")[0].split(".")[-1].startswith("uhok_") and sig not in documented]
    problems += [f"the README documents {sig}, which is not installed" for sig in stale]
    checks.check(f"the Functions table is the catalog's ({len(documented)} functions)", not problems, "\n".join(problems))

    # SQLSTATEs: each one the code raises is in the README's table.
    codes = {}
    for line in open(os.path.join(subprocess.run([os.environ.get("PG_CONFIG", "pg_config"), "--sharedir"], capture_output=True, text=True)
                                  .stdout.strip() or "/usr/share/postgresql/15", "errcodes.txt")):
        f = line.split()
        if len(f) == 4 and re.fullmatch(r"[0-9A-Z]{5}", f[0]):
            # A condition name can have two codes (null_value_not_allowed: 22004 and 39004);
            # PL/pgSQL's RAISE takes the first, as here.
            codes.setdefault(f[2], f[0])
            codes.setdefault(f[3], f[0])
    raised = set()
    for folder in ("src", "sql"):
        for f in os.listdir(folder):
            if f.endswith((".rs", ".sql")) and not f.startswith("uhok_embed--"):
                source = open(os.path.join(folder, f), encoding="utf-8").read()
                # pgrx's PgSqlErrorCode names, and PL/pgSQL's RAISE ... ERRCODE = 'condition'
                # (in sql/ and in SQL embedded in the Rust files).
                for m in re.finditer(r"ERRCODE_[A-Z_]+|ERRCODE = '([a-z_0-9]+)'", source):
                    raised.add(codes.get(m.group(1) or m.group(0), m.group(0)))
    table = set(re.findall(r"^\| `([0-9A-Z]{5})` \|", readme, flags=re.M))
    checks.check(f"the SQLSTATE table is the {len(raised)} SQLSTATEs the code raises", raised == table,
                 f"raised, not in the table: {sorted(raised - table)}; in the table, raised nowhere: {sorted(table - raised)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True)
    parser.add_argument("--cargo-log")
    args = parser.parse_args()
    readme = open("README.md", encoding="utf-8").read()
    lines = readme.splitlines()
    checks = Checks()

    db, demo_db = "uhok_embed_readme", "uhok_embed_readme_demo"
    for name in (db, demo_db):
        psql(args, "postgres", f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};")
    demo_loaded = False
    marked = 0
    for kind, body, expected, line in blocks(lines):
        marked += 1
        where = f"README.md:{line}"
        if kind == "demo":
            if not demo_loaded:
                status, _, err = psql(args, demo_db, "CREATE EXTENSION uhok_embed CASCADE;\n"
                                      "\\i sql/recipe_schema.sql\n\\i demo/load.sql\n")
                checks.check("the demo's table loads", status == 0, err)
                demo_loaded = True
            # "top 5 for 'q':" then demo/search.sql's output, for each query shown.
            parts = re.split(r"^top 5 for '(.*)':$", body, flags=re.M)
            for query, shown in zip(parts[1::2], parts[2::2]):
                status, out, err = psql(args, demo_db, open("demo/search.sql").read(), "-v", f"q={query}")
                checks.check(f"{where}: the demo's top 5 for '{query}'",
                             status == 0 and same_output(shown.strip("\n"), out), diff(shown.strip("\n"), out + err))
            continue
        status, out, err = psql(args, db, body, *(["-At"] if kind == "json-keys" else []))
        first = (body.strip().splitlines() or ["(an empty block)"])[0][:60]
        if status != 0:
            checks.check(f"{where}: {first}", False, err)
            continue
        if kind == "run":
            checks.check(f"{where}: {first} runs", True)
        elif kind == "output":
            checks.check(f"{where}: {first} prints what the README shows", same_output(expected, out),
                         diff(expected, out))
        else:
            try:
                want, got = keys(json.loads(expected)), keys(json.loads(out))
            except json.JSONDecodeError as e:
                checks.check(f"{where}: {first} prints JSON", False, f"{e}\n{out}")
                continue
            checks.check(f"{where}: {first} has the README's keys", want == got,
                         f"only in the README: {sorted(want - got)}\nonly in the output: {sorted(got - want)}")

    contract(args, db, readme, checks)

    # A marker mistyped (or a section rewritten without its markers) must not pass unchecked.
    checks.check(f"{marked} marked examples found (at least {MIN_MARKED})", marked >= MIN_MARKED)

    # Every file a newcomer may open is named in the README.
    named = []
    for folder in ("scripts", "bench", "demo", "docs", "tests", "tests/concurrency", "sql", "src",
                   "crates/embed-core/src", "clients/python/src/uhok_embed_client", "clients/python/tests"):
        for f in sorted(os.listdir(folder)):
            path = os.path.join(folder, f)
            if not os.path.isfile(path) or re.match(r"uhok_embed--.*\.sql$", f) or f.endswith(".sha256"):
                continue
            named.append(path)
    missing = [p for p in named
               if os.path.basename(p) not in readme and os.path.splitext(os.path.basename(p))[0] not in readme]
    checks.check(f"the README names each of {len(named)} files", not missing, "not named: " + " ".join(missing))

    if args.cargo_log:
        found = re.search(r"same ids and offsets as tokenizers for (\d+) texts", open(args.cargo_log).read())
        n = int(found.group(1)) if found else 0
        checks.check(f"the README states the compact tokenizer test's {n:,} texts",
                     found and f"on {n:,} texts" in readme,
                     f"README.md has no 'on {n:,} texts'" if found else f"{args.cargo_log} has no text count")

    print(f"README examples and facts: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
