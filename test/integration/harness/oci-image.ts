// A busybox OCI image archive built from the project's busybox root file system
// (dist/images/busybox/rootfs, from `make guest`), for `ctr images import`: no registry is
// reachable here. Docker 20.10's `docker load` wants the older docker-archive format
// (manifest.json, config and layer tar by name): buildBusyboxDockerArchive makes that from
// the same layer and config. The layout is the OCI image spec's: oci-layout, index.json, and blobs for
// one uncompressed layer tar, the config and the manifest. Reproducible: the layer is tarred
// in name order with zero times and owners, and the JSON is written in a fixed order.
// buildImageArchive makes the same from any directory (the CRI tests' pause image).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./moat-cli.js";

export const BUSYBOX_IMAGE = "docker.io/library/busybox:latest";

const REPRODUCIBLE_TAR = ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"];

/** Builds the archive under `dir` and returns its path. */
export function buildBusyboxArchive(dir: string): string {
  return buildImageArchive(dir, { name: BUSYBOX_IMAGE, tree: join(repoRoot, "dist", "images", "busybox", "rootfs"), config: busyboxConfig });
}

/**
 * Builds an OCI image archive under `dir` named `name` (io.containerd.image.name) whose one
 * layer is the directory `tree`, with the config `config(layerDigest)`; returns its path.
 */
export function buildImageArchive(dir: string, image: { name: string; tree: string; config: (layerDigest: string) => object }): string {
  const slug = image.name.replace(/[^a-z0-9]+/gi, "-");
  const layout = join(dir, `${slug}-oci`);
  const blobs = join(layout, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const addBlob = (path: string): { digest: string; size: number } => {
    const bytes = readFileSync(path);
    const hex = createHash("sha256").update(bytes).digest("hex");
    renameSync(path, join(blobs, hex));
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const addJson = (value: object) => {
    const path = join(layout, "blob.json");
    writeFileSync(path, JSON.stringify(value));
    return addBlob(path);
  };

  const layerTar = join(layout, "layer.tar");
  treeLayer(image.tree, layerTar);
  const layer = addBlob(layerTar); // uncompressed: its digest is also its diff id
  const config = addJson(image.config(layer.digest));
  const manifest = addJson({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
  });
  writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "io.containerd.image.name": image.name, "org.opencontainers.image.ref.name": image.name.split(":").pop() ?? "latest" },
        },
      ],
    }),
  );
  const archive = join(dir, `${slug}-oci.tar`);
  execFileSync("tar", [...REPRODUCIBLE_TAR, "-C", layout, "-cf", archive, "oci-layout", "index.json", "blobs"]);
  return archive;
}

/** An image's one layer: the tree, tarred reproducibly and uncompressed. */
function treeLayer(tree: string, path: string): void {
  execFileSync("tar", [...REPRODUCIBLE_TAR, "-C", join(tree, "."), "-cf", path, "."]);
}


function busyboxConfig(layerDigest: string): object {
  return {
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"] },
    rootfs: { type: "layers", diff_ids: [layerDigest] },
  };
}

/**
 * The same image as a docker-archive (`docker save`'s format, which Docker 20.10's `docker
 * load` reads): manifest.json naming the config file, the tag and the layer tar. Returns its path.
 */
export function buildBusyboxDockerArchive(dir: string, tag: string): string {
  const tree = join(dir, "busybox-docker");
  mkdirSync(tree, { recursive: true });
  const layerTar = join(tree, "layer.tar");
  treeLayer(join(repoRoot, "dist", "images", "busybox", "rootfs"), layerTar);
  const layerHex = createHash("sha256").update(readFileSync(layerTar)).digest("hex");
  mkdirSync(join(tree, layerHex));
  renameSync(layerTar, join(tree, layerHex, "layer.tar"));
  const config = JSON.stringify(busyboxConfig(`sha256:${layerHex}`));
  const configName = `${createHash("sha256").update(config).digest("hex")}.json`;
  writeFileSync(join(tree, configName), config);
  writeFileSync(join(tree, "manifest.json"), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: [`${layerHex}/layer.tar`] }]));
  const archive = join(dir, "busybox-docker.tar");
  execFileSync("tar", [...REPRODUCIBLE_TAR, "-C", tree, "-cf", archive, "manifest.json", configName, layerHex]);
  return archive;
}
