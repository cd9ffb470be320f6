export { hostCgroupTarget, isSystemdCgroupsPath, slicePath, type HostCgroupTarget } from "./cgroups-path.js";
export { placeInHostCgroup, releaseHostCgroup } from "./host-cgroup.js";
