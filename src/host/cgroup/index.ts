export { hostCgroupTarget, isSystemdCgroupsPath, slicePath, type HostCgroupTarget } from "./cgroups-path.js";
export { placeInHostCgroup, releaseHostCgroup } from "./host-cgroup.js";
export { cgroupDirsIn, cpuLimitWrites, hostCpuLimits, joinHostCgroup, limitHostCgroup, type CgroupWrite, type HostCpuLimits } from "./sandbox-cgroup.js";
