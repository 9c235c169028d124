/**
 * auditstream's message dialect: its Go SDK sends `user_id` as an integer. The actor is then the
 * number's decimal form, and the stored event keeps the number as sent.
 */
import type { AuditEvent, EventOptions } from '../../../public/index.ts';
import { toEvent } from '../../../public/index.ts';

/** The event for a message whose actor field holds a safe integer, or undefined for any other message. */
export function integerActorEvent(value: unknown, options: EventOptions): AuditEvent | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const actor = readField(value as Record<string, unknown>, options.actorField);
  if (typeof actor !== 'number' || !Number.isSafeInteger(actor)) return undefined;
  return toEvent(value, { ...options, actorId: String(actor) });
}

function readField(object: Record<string, unknown>, dotted: string): unknown {
  let current: unknown = object;
  for (const key of dotted.split('.')) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
