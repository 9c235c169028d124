export {
  AuditEventBuilder, AuditEventBuilder as AuditEvent, newAuditEvent, PublishAsyncError, Transfer,
} from './transfer.ts';
export type { AuditEventJson, ObjectId, PublishOptions, TransferOptions } from './transfer.ts';
export * from './http.ts';
