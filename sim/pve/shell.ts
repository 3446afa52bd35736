// What `pct exec <vmid> -- <command…>` runs inside a simulated container: a handful of coreutils
// and a tiny `sh -c` (words, quotes, ; && ||, redirections) over the guest file system. Enough
// for systemd/deliver-jit and for tests to look around; anything else is refused with exit 127
// rather than pretended.
import { posix } from "node:path";
import { FsError, GuestFs } from "./guest-fs.js";

export interface ExecResult {
  exitcode: number;
  stdout: string;
  stderr: string;
}

interface Io {
  stdin: { data: string; used: boolean };
  out: string[];
  err: string[];
  umask: { value: number };
}

type Builtin = (args: string[], io: Io, fs: GuestFs) => number;

const fsMessage = (e: unknown): string => {
  if (!(e instanceof FsError)) throw e;
  return { ENOENT: "No such file or directory", EEXIST: "File exists", EISDIR: "Is a directory", ENOTDIR: "Not a directory" }[e.code];
};

const readStdin = (io: Io): string => {
  if (io.stdin.used) return "";
  io.stdin.used = true;
  return io.stdin.data;
};

const BUILTINS: Record<string, Builtin> = {
  true: () => 0,
  false: () => 1,
  echo: (args, io) => {
    const n = args[0] === "-n";
    io.out.push(args.slice(n ? 1 : 0).join(" ") + (n ? "" : "\n"));
    return 0;
  },
  cat: (args, io, fs) => {
    let rc = 0;
    for (const f of args.length ? args : ["-"]) {
      if (f === "-") {
        io.out.push(readStdin(io));
        continue;
      }
      try {
        io.out.push(fs.read(f));
      } catch (e) {
        io.err.push(`cat: ${f}: ${fsMessage(e)}\n`);
        rc = 1;
      }
    }
    return rc;
  },
  mkdir: (args, io, fs) => {
    let parents = false;
    let mode = 0o777 & ~io.umask.value;
    const dirs: string[] = [];
    for (let i = 0; i < args.length; i++) {
      if (args[i] === "-p") parents = true;
      else if (args[i] === "-m") mode = parseInt(args[++i] ?? "", 8);
      else dirs.push(args[i]);
    }
    if (!dirs.length) return usage(io, "mkdir: missing operand");
    let rc = 0;
    for (const d of dirs) {
      try {
        fs.mkdir(d, mode, parents);
      } catch (e) {
        io.err.push(`mkdir: cannot create directory '${d}': ${fsMessage(e)}\n`);
        rc = 1;
      }
    }
    return rc;
  },
  mv: (args, io, fs) => {
    const ops = args.filter((a) => a !== "-f");
    if (ops.length !== 2) return usage(io, "mv: missing destination file operand");
    try {
      fs.rename(ops[0], ops[1]);
      return 0;
    } catch (e) {
      const msg = fsMessage(e);
      io.err.push(fs.isFile(ops[0]) ? `mv: cannot move '${ops[0]}' to '${ops[1]}': ${msg}\n` : `mv: cannot stat '${ops[0]}': ${msg}\n`);
      return 1;
    }
  },
  rm: (args, io, fs) => {
    const force = args.some((a) => /^-[a-z]*f/.test(a));
    let rc = 0;
    for (const f of args.filter((a) => !a.startsWith("-"))) {
      try {
        fs.remove(f);
      } catch (e) {
        if (force && e instanceof FsError && e.code === "ENOENT") continue;
        io.err.push(`rm: cannot remove '${f}': ${fsMessage(e)}\n`);
        rc = 1;
      }
    }
    return rc;
  },
  chmod: (args, io, fs) => {
    if (args.length !== 2 || !/^[0-7]{3,4}$/.test(args[0])) return usage(io, "chmod: only `chmod <octal-mode> <file>` is simulated", 127);
    try {
      fs.chmod(args[1], parseInt(args[0], 8));
      return 0;
    } catch (e) {
      io.err.push(`chmod: cannot access '${args[1]}': ${fsMessage(e)}\n`);
      return 1;
    }
  },
  stat: (args, io, fs) => {
    if (args.length !== 3 || args[0] !== "-c" || !["%a", "%s"].includes(args[1])) return usage(io, "stat: only `stat -c %a|%s <file>` is simulated", 127);
    try {
      io.out.push((args[1] === "%a" ? fs.mode(args[2]).toString(8) : String(Buffer.byteLength(fs.isFile(args[2]) ? fs.read(args[2]) : ""))) + "\n");
      return 0;
    } catch (e) {
      io.err.push(`stat: cannot statx '${args[2]}': ${fsMessage(e)}\n`);
      return 1;
    }
  },
  test: (args, io, fs) => testExpr(args, io, fs),
  "[": (args, io, fs) => {
    if (args[args.length - 1] !== "]") return usage(io, "[: missing ]", 2);
    return testExpr(args.slice(0, -1), io, fs);
  },
};

function usage(io: Io, msg: string, rc = 1): number {
  io.err.push(`${msg}\n`);
  return rc;
}

function testExpr(args: string[], io: Io, fs: GuestFs): number {
  let negate = false;
  if (args[0] === "!") {
    negate = true;
    args = args.slice(1);
  }
  let result: boolean;
  if (args.length === 1) result = args[0] !== "";
  else if (args.length === 2 && /^-[fdes]$/.test(args[0])) {
    const p = args[1];
    result =
      args[0] === "-f" ? fs.isFile(p) : args[0] === "-d" ? fs.isDir(p) : args[0] === "-e" ? fs.isFile(p) || fs.isDir(p) : fs.isFile(p) && fs.read(p).length > 0;
  } else if (args.length === 3 && (args[1] === "=" || args[1] === "!=")) result = (args[0] === args[2]) === (args[1] === "=");
  else return usage(io, `test: unsupported expression: ${args.join(" ")}`, 2);
  return result !== negate ? 0 : 1;
}

// --- sh -c -----------------------------------------------------------------

type Redir = { fd: 1 | 2; op: ">" | ">>"; target: string } | { fd: 0; op: "<"; target: string } | { fd: 2; op: ">&1" };
interface SimpleCommand {
  words: string[];
  redirs: Redir[];
  /** How it joins the previous command. */
  join: ";" | "&&" | "||";
}

class Unsupported extends Error {}

/** Splits a script into simple commands; throws Unsupported for syntax we do not simulate. */
function parseScript(script: string): SimpleCommand[] {
  const cmds: SimpleCommand[] = [];
  let cur: SimpleCommand = { words: [], redirs: [], join: ";" };
  let word: string | null = null;
  let pendingRedir: Redir["op"] | null = null;
  let pendingFd: 0 | 1 | 2 = 1;
  const endWord = () => {
    if (word === null) return;
    if (pendingRedir) {
      cur.redirs.push({ fd: pendingFd, op: pendingRedir, target: word } as Redir);
      pendingRedir = null;
    } else cur.words.push(word);
    word = null;
  };
  const endCommand = (join: SimpleCommand["join"]) => {
    endWord();
    if (pendingRedir) throw new Unsupported("syntax error: redirection without a target");
    if (cur.words.length) cmds.push(cur);
    else if (join !== ";") throw new Unsupported(`syntax error near unexpected token \`${join}'`);
    cur = { words: [], redirs: [], join };
  };
  for (let i = 0; i < script.length; i++) {
    const c = script[i];
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      if (end < 0) throw new Unsupported("unterminated quoted string");
      word = (word ?? "") + script.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      for (; j < script.length && script[j] !== '"'; j++) {
        if (script[j] === "$" || script[j] === "`") throw new Unsupported("expansions are not simulated");
        if (script[j] === "\\" && j + 1 < script.length) s += script[++j];
        else s += script[j];
      }
      if (j >= script.length) throw new Unsupported("unterminated quoted string");
      word = (word ?? "") + s;
      i = j;
    } else if (c === "\\") {
      word = (word ?? "") + (script[++i] ?? "");
    } else if (/\s/.test(c)) {
      if (c === "\n") endCommand(";");
      else endWord();
    } else if (c === ";") endCommand(";");
    else if (c === "&" && script[i + 1] === "&") {
      endCommand("&&");
      i++;
    } else if (c === "|" && script[i + 1] === "|") {
      endCommand("||");
      i++;
    } else if (c === ">" || c === "<") {
      const fd = word === "2" && c === ">" ? 2 : word === "1" && c === ">" ? 1 : null;
      if (fd !== null) word = null;
      else endWord();
      if (c === "<") {
        pendingRedir = "<";
        pendingFd = 0;
      } else if (script[i + 1] === "&" && script[i + 2] === "1" && fd === 2) {
        cur.redirs.push({ fd: 2, op: ">&1" });
        i += 2;
      } else {
        pendingRedir = script[i + 1] === ">" ? ">>" : ">";
        if (pendingRedir === ">>") i++;
        pendingFd = fd ?? 1;
      }
    } else if ("|&$`*?(){}".includes(c)) {
      throw new Unsupported(`'${c}' is not simulated`);
    } else word = (word ?? "") + c;
  }
  endCommand(";");
  return cmds;
}

function runSimple(cmd: SimpleCommand, io: Io, fs: GuestFs, shellName: string): number {
  const [name, ...args] = cmd.words;
  if (name === "umask") {
    if (!args.length) io.out.push(io.umask.value.toString(8).padStart(4, "0") + "\n");
    else if (/^[0-7]{1,4}$/.test(args[0])) io.umask.value = parseInt(args[0], 8);
    else return usage(io, `${shellName}: 1: umask: Illegal mode: ${args[0]}`, 2);
    return 0;
  }
  if (name === "exit") throw new ExitSignal(Number(args[0] ?? 0) || 0);
  const builtin = BUILTINS[posix.basename(name)];
  // Redirections apply to this command only.
  const sub: Io = { stdin: io.stdin, out: [], err: [], umask: io.umask };
  for (const r of cmd.redirs) {
    if (r.op === "<") {
      try {
        sub.stdin = { data: fs.read(r.target), used: false };
      } catch (e) {
        io.err.push(`${shellName}: 1: cannot open ${r.target}: ${fsMessage(e)}\n`);
        return 2;
      }
    }
  }
  const rc = builtin ? builtin(args, sub, fs) : usage(sub, `${shellName}: 1: ${name}: not found`, 127);
  let out = sub.out.join("");
  let err = sub.err.join("");
  for (const r of cmd.redirs) {
    if (r.op === ">&1") {
      out += err;
      err = "";
      continue;
    }
    if (r.op === "<") continue;
    const data = r.fd === 1 ? out : err;
    if (r.fd === 1) out = "";
    else err = "";
    if (r.target === "/dev/null") continue;
    try {
      fs.write(r.target, data, 0o666 & ~io.umask.value, r.op === ">>");
    } catch (e) {
      const why = e instanceof FsError && e.code === "ENOENT" ? "Directory nonexistent" : fsMessage(e);
      io.err.push(`${shellName}: 1: cannot create ${r.target}: ${why}\n`);
      return 2;
    }
  }
  io.out.push(out);
  io.err.push(err);
  return rc;
}

class ExitSignal {
  constructor(readonly code: number) {}
}

function runScript(script: string, io: Io, fs: GuestFs, shellName: string): number {
  let cmds: SimpleCommand[];
  try {
    cmds = parseScript(script);
  } catch (e) {
    if (!(e instanceof Unsupported)) throw e;
    return usage(io, `${shellName} (simulated): ${e.message}`, 127);
  }
  let rc = 0;
  try {
    for (const cmd of cmds) {
      if (cmd.join === "&&" && rc !== 0) continue;
      if (cmd.join === "||" && rc === 0) continue;
      rc = runSimple(cmd, io, fs, shellName);
    }
  } catch (e) {
    if (e instanceof ExitSignal) return e.code;
    throw e;
  }
  return rc;
}

const SHELLS = new Set(["sh", "bash", "dash"]);

/** Runs argv inside the guest (lxc-attach with the container's root as `/`, umask 022). */
export function execInGuest(fs: GuestFs, argv: string[], stdin: string, vmid: number): ExecResult {
  const io: Io = { stdin: { data: stdin, used: false }, out: [], err: [], umask: { value: 0o022 } };
  const [cmd, ...args] = argv;
  const name = posix.basename(cmd ?? "");
  let exitcode: number;
  if (SHELLS.has(name) && args[0] === "-c" && args.length >= 2) {
    exitcode = runScript(args[1], io, fs, cmd);
  } else if (BUILTINS[name]) {
    exitcode = BUILTINS[name](args, io, fs);
  } else {
    io.err.push(`lxc-attach: ${vmid}: ../src/lxc/attach.c: lxc_attach_run_command: No such file or directory - Failed to exec "${cmd ?? ""}" (not simulated)\n`);
    exitcode = 127;
  }
  return { exitcode, stdout: io.out.join(""), stderr: io.err.join("") };
}
