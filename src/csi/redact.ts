/**
 * Renders CSI messages for logs with every secret removed.
 *
 * A field is secret when its descriptor carries the `csi_secret` field option (CSI spec 1.0+).
 * The walk follows the message descriptors, not a hand-kept list: it descends into nested
 * messages, repeated messages, map values and oneof members, so a secret anywhere in a message is
 * replaced by {@link STRIPPED}, upstream protosanitizer's marker. Only fields that are set are
 * replaced: an absent secret stays absent.
 */
import {
  type DescField,
  type DescMessage,
  getOption,
  type JsonObject,
  type JsonValue,
  type MessageShape,
  toJson,
} from "@bufbuild/protobuf";
import { csi_secret } from "../gen/csi/v1/csi_pb.js";

/** What a secret field's value is replaced with (upstream protosanitizer's marker). */
export const STRIPPED = "***stripped***";

/** Whether a field is marked `[(csi.v1.csi_secret) = true]`. */
export function isSecretField(field: DescField): boolean {
  return getOption(field, csi_secret) === true;
}

const hasSecretsCache = new WeakMap<DescMessage, boolean>();

/** Whether `desc` or any message reachable from it has a secret field (memoised). */
function hasSecrets(desc: DescMessage, visiting = new Set<DescMessage>()): boolean {
  const cached = hasSecretsCache.get(desc);
  if (cached !== undefined) return cached;
  if (visiting.has(desc)) return false;
  visiting.add(desc);
  let result = false;
  for (const field of desc.fields) {
    const nested = nestedMessage(field);
    if (isSecretField(field) || (nested !== undefined && hasSecrets(nested, visiting))) {
      result = true;
      break;
    }
  }
  visiting.delete(desc);
  // A type found secret-free while one of its ancestors was still open may be incomplete:
  // only cache the answer of the outermost call or a positive one.
  if (result || visiting.size === 0) hasSecretsCache.set(desc, result);
  return result;
}

function nestedMessage(field: DescField): DescMessage | undefined {
  switch (field.fieldKind) {
    case "message":
      return field.message;
    case "list":
      return field.listKind === "message" ? field.message : undefined;
    case "map":
      return field.mapKind === "message" ? field.message : undefined;
    default:
      return undefined;
  }
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Well-known types have their own JSON forms and never carry CSI secrets. */
function isWellKnown(desc: DescMessage): boolean {
  return desc.typeName.startsWith("google.protobuf.");
}

function strip(desc: DescMessage, json: JsonValue | undefined): void {
  if (!isObject(json) || isWellKnown(desc) || !hasSecrets(desc)) return;
  for (const field of desc.fields) {
    const key = field.name;
    if (!(key in json)) continue;
    if (isSecretField(field)) {
      json[key] = STRIPPED;
      continue;
    }
    const value = json[key];
    switch (field.fieldKind) {
      case "message":
        strip(field.message, value);
        break;
      case "list":
        if (field.listKind === "message" && Array.isArray(value)) {
          for (const item of value) strip(field.message, item);
        }
        break;
      case "map":
        if (field.mapKind === "message" && isObject(value)) {
          for (const item of Object.values(value)) strip(field.message, item);
        }
        break;
      default:
        break;
    }
  }
}

/**
 * The message as JSON (proto field names, unset fields omitted, as upstream's log lines) with
 * every secret field's value replaced by {@link STRIPPED}. Never throws: a message that cannot be
 * rendered yields a placeholder string naming its type.
 */
export function redactMessage<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): JsonValue {
  let json: JsonValue;
  try {
    json = toJson(schema, message, { useProtoFieldName: true });
  } catch (error) {
    const cause = error instanceof Error ? error.message : String(error);
    return `<<cannot render ${schema.typeName}: ${cause}>>`;
  }
  strip(schema, json);
  return json;
}

/** {@link redactMessage} as one line of JSON. */
export function formatRedacted<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): string {
  const json = redactMessage(schema, message);
  return typeof json === "string" && json.startsWith("<<") ? json : JSON.stringify(json);
}
