/** The message of anything thrown, for log lines and events. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
