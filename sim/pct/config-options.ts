// `pct config`'s command line as real pct parses it (PVE::CLI::pct → PVE::JSONSchema::get_options
// over PVE::API2::LXC::Config vm_config's schema, additionalProperties 0): options take a `-` or
// `--` prefix; `current` is a boolean whose value is optional (`--current`, `--current 0`,
// `--current=yes`); `snapshot` takes a name; anything else is refused before any API call. The vmid
// is the one positional argument. Getopt::Long's unique-prefix abbreviations are not modelled.

export type ConfigArgs = { vmid: string; current: boolean; snapshot?: string } | { error: string };

function parseBoolean(v: string): boolean | undefined {
  if (/^(1|on|yes|true)$/i.test(v)) return true;
  if (/^(0|off|no|false)$/i.test(v)) return false;
  return undefined;
}

export function parseConfigArgs(argv: string[]): ConfigArgs {
  let current = false;
  let snapshot: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) {
      rest.push(argv[i]);
      continue;
    }
    const [, name, inline] = m;
    if (name === "current") {
      // current:s: the next argument is its value unless it looks like an option.
      let v = inline;
      if (v === undefined && i + 1 < argv.length && !argv[i + 1].startsWith("-")) v = argv[++i];
      const b = v === undefined || v === "" ? true : parseBoolean(v);
      if (b === undefined) return { error: "400 Parameter verification failed.\ncurrent: unable to parse boolean option" };
      current = b;
    } else if (name === "snapshot") {
      const v = inline ?? argv[++i];
      if (v === undefined) return { error: "Option snapshot requires an argument\n400 unable to parse option" };
      snapshot = v;
    } else {
      // Getopt::Long's warning, then get_options' exception.
      return { error: `Unknown option: ${name}\n400 unable to parse option` };
    }
  }
  if (rest.length === 0) return { error: "400 not enough arguments" };
  if (rest.length > 1) return { error: "400 too many arguments" };
  if (!/^\d+$/.test(rest[0])) return { error: "400 Parameter verification failed.\nvmid: type check ('integer') failed - got '" + rest[0] + "'" };
  if (snapshot && current) return { error: "400 Parameter verification failed.\nsnapshot: cannot use 'snapshot' parameter with 'current'\ncurrent: cannot use 'snapshot' parameter with 'current'" };
  return { vmid: rest[0], current, snapshot };
}
