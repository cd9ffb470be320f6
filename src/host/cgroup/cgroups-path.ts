// Where on the host a sandbox's processes (QEMU, its share servers) go, from the spec's
// linux.cgroupsPath. Two forms arrive:
//   - systemd's "slice:prefix:name" (containerd's CRI plugin writes it when the pod's cgroup
//     parent is a slice, i.e. when the kubelet and containerd use SystemdCgroup = true; runc
//     reads it so under --systemd-cgroup). The scope is "<prefix>-<name>.scope" in that slice,
//     and a slice's cgroup is nested by its dashes: "kubepods-burstable-pod1.slice" lives at
//     /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice.
//   - a cgroupfs path ("/kubepods/burstable/pod1/c1", podman's "/libpod_parent/libpod-<id>").
// The form is recognised by its shape, as Kata does: a VM runtime never sees containerd's
// SystemdCgroup option (docs/design.md, "Host cgroups").
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

export interface HostCgroupTarget {
  /** The cgroup's path below each hierarchy's root, absolute ("/a.slice/a-b.scope"). */
  path: string;
  /** Set for systemd's form: the transient scope unit and its slice. */
  systemd?: { slice: string; unit: string };
}

/** A systemd unit name part: what runc and Kata accept. */
const UNIT_PART = /^[A-Za-z0-9_.\\:-]*$/;
const SYSTEMD_FORM = /^([^:/]*):([^:/]*):([^:/]+)$/;

export function isSystemdCgroupsPath(cgroupsPath: string): boolean {
  return SYSTEMD_FORM.test(cgroupsPath);
}

/** The host cgroup a spec's cgroupsPath names; `where` names the spec in errors. */
export function hostCgroupTarget(cgroupsPath: string, where: string): HostCgroupTarget {
  const systemd = SYSTEMD_FORM.exec(cgroupsPath);
  if (systemd) {
    const [, sliceName = "", prefix = "", name = ""] = systemd;
    for (const part of [sliceName, prefix, name]) {
      if (!UNIT_PART.test(part)) throw invalid(where, cgroupsPath, `"${part}" is not a systemd unit name part`);
    }
    const slice = sliceName || "system.slice";
    if (name.endsWith(".slice")) throw invalid(where, cgroupsPath, "a container's cgroup must be a scope, not a slice");
    const unit = `${prefix ? `${prefix}-` : ""}${name}.scope`;
    return { path: `${slicePath(slice, where, cgroupsPath)}/${unit}`, systemd: { slice, unit } };
  }
  // OCI: a relative path is the runtime's to place; moat places it below the root, as an absolute one.
  const parts = cgroupsPath.split("/").filter((part) => part.length > 0);
  if (parts.length === 0) throw invalid(where, cgroupsPath, "it names no cgroup below the root");
  if (parts.some((part) => part === "." || part === "..")) throw invalid(where, cgroupsPath, "it must not contain . or .. components");
  return { path: `/${parts.join("/")}` };
}

/** The cgroup path of a systemd slice: every dash-separated prefix is a parent slice. */
export function slicePath(slice: string, where: string, cgroupsPath: string): string {
  if (slice === "-.slice") return "";
  if (!slice.endsWith(".slice")) throw invalid(where, cgroupsPath, `"${slice}" is not a slice (it must end in .slice)`);
  const stem = slice.slice(0, -".slice".length);
  const parts = stem.split("-");
  if (parts.some((part) => part.length === 0)) throw invalid(where, cgroupsPath, `"${slice}" is not a valid slice name (empty part between dashes)`);
  return parts.map((_, index) => `/${parts.slice(0, index + 1).join("-")}.slice`).join("");
}

function invalid(where: string, cgroupsPath: string, why: string): MoatError {
  return new MoatError("MOAT_BUNDLE_INVALID", `${where}: linux.cgroupsPath ${JSON.stringify(cgroupsPath)}: ${why}`, { status: Code.INVALID_ARGUMENT });
}
