// Host processes that stand for a container whose process runs in a VM: moat-standin (the
// runc-style stand-in of `moat create`, C) and moat-task-pid holders (a containerd task's pid,
// a foreground `moat run`'s hooks' pid), shared by the shim and the CLI.
export { endHoldersIn, TaskPid, type HolderNetns, type TaskPidRecord } from "./task-pid.js";
