/**
 * Differences from upstream that are on purpose. Each entry names the README section ("What is
 * different from upstream (on purpose)") that explains it; a difference not covered here fails
 * the differential suite.
 */

import type { Difference, Intentional } from "./compare.ts";
import type { Json } from "./normalise.ts";

const PROVISIONING_MESSAGE = /^External provisioner is provisioning volume for claim /;

/** Ours has exactly upstream's messages, less "External provisioner is provisioning ...". */
function onlyProvisioningMessageMissing(d: Difference): boolean {
  const up = (Array.isArray(d.upstream) ? d.upstream : []) as Json[];
  const ours = (Array.isArray(d.ours) ? d.ours : []) as Json[];
  const expected = up.filter((m) => !PROVISIONING_MESSAGE.test(String(m)));
  return up.length > expected.length && JSON.stringify(ours) === JSON.stringify(expected);
}

export const ALLOWLIST: readonly Intentional[] = [
  {
    id: "provisioning-event-deferred",
    reason:
      "The Normal Provisioning event is written only when an attempt is retried or still runs after 5 s, so a volume costs fewer API writes (README: fewer API writes per volume).",
    path: 'events["Normal Provisioning"]',
    when: onlyProvisioningMessageMissing,
  },
  {
    id: "provisioning-event-deferred-source",
    reason: "The same deferred Provisioning event, in the list of who wrote each kind of event.",
    path: 'eventSources["Normal Provisioning"]',
    when: (d) => d.ours === undefined,
  },
  {
    id: "populator-event-source",
    reason:
      "The 'Assuming an external populator will provision the volume' event comes from the sidecar's one event recorder (<driver>_<host>_<id>); upstream writes that one event from a second recorder named external-provisioner (README: events).",
    cases: ["populator"],
    path: 'eventSources["Normal Provisioning"]',
    when: (d) =>
      JSON.stringify(d.upstream).includes(
        '"external-provisioner on , reporting external-provisioner "',
      ) &&
      Array.isArray(d.ours) &&
      d.ours.length === 1,
  },
  {
    id: "config-error-exit-code",
    reason:
      "Every configuration error exits 2, as a flag that does not parse does in upstream; upstream exits 1 for conflicting endpoints or a bad logging configuration and 255 for the checks it makes with klog.Fatal (NODE_NAME, NAMESPACE, feature gates) (README: configuration errors exit 2).",
    cases: ["both-endpoints", "logging-format", "node-no-env", "capacity-no-env", "gate-unknown"],
    path: "exit",
    when: (d) => d.ours === "exit code 2" && d.upstream !== "exit code 0",
  },
  {
    id: "flag-values-checked-at-start",
    reason:
      "Flag values that cannot work are refused at start-up with exit 2: upstream starts with them and then panics at the first claim (a UUID length beyond 32), provisions nothing (0 workers) or gives every CSI call a zero deadline (a 0s timeout) (README: flag values checked at start-up).",
    cases: ["uuid-length-big", "workers-zero", "timeout-zero"],
    path: "exit",
    when: (d) => d.upstream === "still running" && d.ours === "exit code 2",
  },
];
