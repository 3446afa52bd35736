// The template stack: builds the unprivileged LXC template every runner is a linked clone of.
//
//   download the Ubuntu 24.04 standard CT image (checksum pinned)
//   -> create an unprivileged container from it (nesting + keyctl for Docker, CI bridge/VLAN, storage)
//   -> on the PVE host, as root: pct push template/*, pct exec provision.sh, pct shutdown, pct template
//
// The conversion is `pct template` (POST …/template), never `template = true` at creation: only the
// conversion turns the root volume into a base volume, and LVM-thin and ZFS clone linked only from
// base volumes (pve-container src/PVE/API2/LXC.pm `template`, PVE::Storage vdisk_create_base).
//
// terraform runs this stack on the PVE host as root (the provisioners call `pct`). Credentials come
// only from the environment: PROXMOX_VE_API_TOKEN, or — because PVE lets only root@pam set the keyctl
// feature and refuses that to every API token, root@pam's included — PROXMOX_VE_USERNAME=root@pam
// with PROXMOX_VE_PASSWORD (bpg docs/index.md, pve-container check_ct_modify_config_perm).
//
// The template is immutable: every input that shapes it (scripts, image, container settings) feeds
// one fingerprint; a new fingerprint replaces the container and runs the whole build again. Replacing
// it deletes the old template first, which PVE refuses while linked clones of it exist: with runners
// about, build under another vmid instead (`template deploy --replace`, cli/template-replace.ts: a
// work dir and state per vmid; the listener destroys the old template once no runner needs it).
import { App, LocalBackend, TerraformOutput, TerraformStack, DataResource } from "cdktn";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ProxmoxProvider } from "./bpg-proxmox.js";
import { DownloadFile, ImageContainer, type ChecksumAlgorithm } from "./bpg-proxmox-template.js";
import { runnerVersionTag } from "../listener/templates/runner-release.js";
import { pinnedRunnerVersion } from "./runner-pin.js";

export const TEMPLATE_STACK_NAME = "template";
export const TEMPLATE_TAG = "pve-runners-template";

/** The files of template/ pushed into the container, and where they land. provision.sh finds its siblings next to itself. */
export const TEMPLATE_FILES: ReadonlyArray<{ file: string; dest: string; perms: string }> = [
  { file: "provision.sh", dest: "/root/provision.sh", perms: "0700" },
  { file: "docker-storage-driver.sh", dest: "/root/docker-storage-driver.sh", perms: "0700" },
  { file: "runner-once.sh", dest: "/root/runner-once.sh", perms: "0700" },
  { file: "pve-runner.service", dest: "/root/pve-runner.service", perms: "0600" },
];

export interface CtImage {
  readonly url: string;
  readonly checksum: string;
  readonly checksumAlgorithm: ChecksumAlgorithm;
  readonly fileName: string;
}

/**
 * Proxmox's Ubuntu 24.04 standard CT image. URL and sha512 from Proxmox's appliance index
 * (proxmox/pve-manager aplinfo/aplinfo.dat, package ubuntu-24.04-standard 24.04-2), the list
 * `pveam available` shows.
 */
export const UBUNTU_2404_STANDARD: CtImage = {
  url: "http://download.proxmox.com/images/system/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
  checksum:
    "45c2978e6b97fe292ada95fe06834276015e5739a594db4de2fdfd830fa0c37942e8ae118fc1e32ffd9154b3f9378b592738b668ea3957db41f2907b86f219de",
  checksumAlgorithm: "sha512",
  fileName: "ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
};

export interface TemplateStackSpec {
  readonly endpoint: string;
  readonly insecure?: boolean;
  readonly node: string;
  /** The template's vmid: proxmox.templateVmid. */
  readonly vmid: number;
  /** The runners' pool: the template joins it so the token's VM.Clone on /pool/<pool> covers it. */
  readonly pool?: string;
  readonly bridge: string;
  readonly vlan?: number;
  /** The build needs the internet (apt, the runner download). Default DHCP. */
  readonly ipv4?: { readonly address: string; readonly gateway?: string };
  /** Storage of the root volume: LVM-thin, ZFS, Ceph… anything that clones linked from a base volume. */
  readonly datastore: string;
  readonly diskGb?: number;
  /** Resources while building; every clone sets its own. */
  readonly cores?: number;
  readonly memoryMb?: number;
  readonly swapMb?: number;
  /** Storage with content `vztmpl` the image is downloaded to. Default `local`. */
  readonly imageDatastore?: string;
  readonly image?: CtImage;
  /** Absolute path of template/ on the PVE host (the provisioners read it there). */
  readonly templateDir: string;
  readonly hostname?: string;
  /** The pct command (tests put a recording stand-in first on PATH). */
  readonly pct?: string;
  /** Seconds `pct shutdown` waits for a clean shutdown. */
  readonly shutdownTimeout?: number;
}

/** POSIX shell single-quoting, for paths in local-exec commands. */
export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The build's fingerprint: the template files' content and every setting that shapes the template. */
export function templateFingerprint(spec: TemplateStackSpec): string {
  const h = createHash("sha256");
  for (const f of TEMPLATE_FILES) {
    let content: Buffer;
    try {
      content = readFileSync(join(spec.templateDir, f.file));
    } catch (err) {
      throw new Error(`template stack: cannot read ${join(spec.templateDir, f.file)} (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
    h.update(`${f.file}\0${f.dest}\0${f.perms}\0`).update(content).update("\0");
  }
  const { endpoint: _e, insecure: _i, templateDir: _t, pct: _p, shutdownTimeout: _s, ...shaping } = spec;
  h.update(JSON.stringify(shaping, Object.keys(shaping).sort()));
  h.update(JSON.stringify(spec.image ?? UBUNTU_2404_STANDARD));
  return h.digest("hex");
}

/** The provisioning commands, in order; run as root on the PVE host. */
export function provisionCommands(spec: TemplateStackSpec): string[] {
  const pct = spec.pct ?? "pct";
  const id = String(spec.vmid);
  return [
    // Running for a re-run after a failure too (bpg started it on create).
    `${pct} status ${id} | grep -q 'status: running' || ${pct} start ${id}`,
    // Wait until the container's systemd has booted (degraded is fine).
    `${pct} exec ${id} --keep-env 0 -- systemctl is-system-running --wait || true`,
    ...TEMPLATE_FILES.map((f) => `${pct} push ${id} ${shq(join(spec.templateDir, f.file))} ${f.dest} --perms ${f.perms}`),
    // --keep-env 0: terraform's environment holds the PVE credentials; none of it enters the template.
    `${pct} exec ${id} --keep-env 0 -- bash /root/provision.sh`,
    `${pct} shutdown ${id} --timeout ${spec.shutdownTimeout ?? 120} --forceStop 1`,
    `${pct} template ${id}`,
  ];
}

export class TemplateStack extends TerraformStack {
  readonly container: ImageContainer;
  readonly download: DownloadFile;

  constructor(scope: App, spec: TemplateStackSpec) {
    super(scope, TEMPLATE_STACK_NAME);
    const image = spec.image ?? UBUNTU_2404_STANDARD;
    const fingerprint = templateFingerprint(spec);
    // The runner provision.sh installs: tagged on the template so the listener can tell how far
    // behind GitHub's releases it is (listener/templates/runner-freshness.ts). provision.sh is in the
    // fingerprint, so a new pin rebuilds the template and the tag with it.
    const runnerVersion = pinnedRunnerVersion(spec.templateDir);
    new LocalBackend(this, { path: "terraform.tfstate" });
    new ProxmoxProvider(this, "proxmox", { endpoint: spec.endpoint, insecure: spec.insecure });

    this.download = new DownloadFile(this, "image", {
      contentType: "vztmpl",
      datastoreId: spec.imageDatastore ?? "local",
      nodeName: spec.node,
      url: image.url,
      checksum: image.checksum,
      checksumAlgorithm: image.checksumAlgorithm,
      fileName: image.fileName,
      // A pinned, versioned file: never replaced behind terraform's back.
      overwrite: false,
      overwriteUnmanaged: true,
      uploadTimeout: 1800,
    });

    // Changes whenever anything that shapes the template does; replaces the container below.
    const build = new DataResource(this, "build", { input: { fingerprint } });

    this.container = new ImageContainer(this, "template", {
      nodeName: spec.node,
      vmId: spec.vmid,
      description: `pve-runners runner template (build ${fingerprint.slice(0, 12)}, GitHub Actions runner ${runnerVersion}); built by the template stack, do not start`,
      poolId: spec.pool,
      tags: [TEMPLATE_TAG, runnerVersionTag(runnerVersion)],
      unprivileged: true,
      started: true,
      startOnBoot: false,
      // Docker inside an unprivileged CT (PVE admin guide, "Linux Container": nesting and keyctl); clones inherit them and re-send them unchanged.
      features: { nesting: true, keyctl: true },
      operatingSystem: { templateFileId: this.download.ref("id"), type: "ubuntu" },
      disk: { datastoreId: spec.datastore, size: spec.diskGb ?? 16 },
      networkInterface: [{ name: "eth0", bridge: spec.bridge, vlanId: spec.vlan, firewall: false }],
      initialization: {
        hostname: spec.hostname ?? "pve-runners-template",
        ipConfig: { ipv4: spec.ipv4 ?? { address: "dhcp" } },
      },
      cpu: { cores: spec.cores ?? 2 },
      memory: { dedicated: spec.memoryMb ?? 2048, swap: spec.swapMb ?? 512 },
      timeoutCreate: 1800,
      lifecycle: {
        // After `pct template` PVE reports template=1 and stopped; nothing is ever changed in place:
        // a new build replaces the whole container.
        ignoreChanges: "all",
        replaceTriggeredBy: [`${DataResource.tfResourceType}.${build.friendlyUniqueId}`],
      },
    });

    // Provisioning runs exactly when the container is (re)created.
    new DataResource(this, "provision", {
      input: { vmid: spec.vmid, fingerprint },
      dependsOn: [this.container],
      lifecycle: { replaceTriggeredBy: [`${ImageContainer.tfResourceType}.${this.container.friendlyUniqueId}`] },
      provisioners: provisionCommands(spec).map((command) => ({ type: "local-exec" as const, command })),
    });

    new TerraformOutput(this, "template_vmid", { value: this.container.ref("vm_id") });
  }
}

export interface SynthesizedTemplateStack {
  readonly workingDir: string;
  readonly file: string;
  readonly fingerprint: string;
}

/** Synthesizes the template stack into `dir` (created if missing). */
export function synthTemplateStack(dir: string, spec: TemplateStackSpec): SynthesizedTemplateStack {
  mkdirSync(dir, { recursive: true });
  const app = new App({ outdir: resolve(dir), skipValidation: true });
  new TemplateStack(app, spec);
  app.synth();
  const workingDir = join(resolve(dir), "stacks", TEMPLATE_STACK_NAME);
  return { workingDir, file: join(workingDir, "cdk.tf.json"), fingerprint: templateFingerprint(spec) };
}
