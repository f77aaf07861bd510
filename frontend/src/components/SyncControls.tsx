/** "Last synced …" and "Sync now"; while a sync runs the hub polls and says the figures are still changing. */
import { useCallback, useEffect, useState } from "react";
import { RefreshCw } from "lucide-react";
import { useMutation } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";
import { marketingApi } from "../api/marketing";
import { formatDateTime } from "../lib/format";
import { useFormat } from "../session";
import { ErrorMessage } from "./States";

const SYNC_KEY = "hub.syncStarted";
const SYNC_EVENT = "hub:sync-started";
export const SYNC_POLL_MS = 2000;
const GIVE_UP_MS = 15 * 60 * 1000;
const CLOCK_SLACK_MS = 5000;

interface SyncMark {
  startedAt: string;
  /** last_synced_at when the sync was started; undefined when the starter did not know it. */
  baseline?: string | null;
}

function readMark(): SyncMark | null {
  try {
    return JSON.parse(sessionStorage.getItem(SYNC_KEY) ?? "null") as SyncMark | null;
  } catch {
    return null;
  }
}

/** Marks a sync as started (POST sync, or connecting an ad account, which starts one). */
export function announceSyncStarted(baseline?: string | null): void {
  const mark: SyncMark = { startedAt: new Date().toISOString(), baseline };
  sessionStorage.setItem(SYNC_KEY, JSON.stringify(mark));
  window.dispatchEvent(new Event(SYNC_EVENT));
}

/** A run has finished once last_synced_at (the start of the last finished run) moved past the mark. */
export function syncFinished(mark: SyncMark, lastSyncedAt: string | null | undefined): boolean {
  if (!lastSyncedAt) return false;
  if (mark.baseline !== undefined) return lastSyncedAt !== mark.baseline;
  return Date.parse(lastSyncedAt) >= Date.parse(mark.startedAt) - CLOCK_SLACK_MS;
}

/** Whether a sync this tab started is still running, judged from the stats the page polls. */
export function useSyncProgress(lastSyncedAt: string | null | undefined) {
  const [mark, setMark] = useState<SyncMark | null>(readMark);
  const start = useCallback(() => announceSyncStarted(lastSyncedAt ?? null), [lastSyncedAt]);
  useEffect(() => {
    const follow = () => setMark(readMark());
    window.addEventListener(SYNC_EVENT, follow);
    return () => window.removeEventListener(SYNC_EVENT, follow);
  }, []);
  useEffect(() => {
    if (!mark) return;
    if (syncFinished(mark, lastSyncedAt) || Date.now() - Date.parse(mark.startedAt) > GIVE_UP_MS) {
      sessionStorage.removeItem(SYNC_KEY);
      setMark(null);
    }
  }, [mark, lastSyncedAt]);
  return { syncing: mark !== null, start };
}

export function SyncControls({ lastSyncedAt, syncing, onStarted }: { lastSyncedAt: string | null; syncing: boolean; onStarted: () => void }) {
  const { t } = useTranslation();
  const { language, timeZone } = useFormat();
  const sync = useMutation({
    mutationFn: marketingApi.syncNow,
    onSuccess: onStarted,
    onError: (error) => {
      if (error instanceof ApiError && error.status === 409) onStarted(); // one is already running: follow it
    },
  });
  const conflict = sync.error instanceof ApiError && sync.error.status === 409;
  return (
    <div className="sync-controls">
      <span className="muted" id="last-synced">
        {lastSyncedAt ? t("sync.last", { when: formatDateTime(lastSyncedAt, language, timeZone) }) : t("sync.never")}
      </span>
      <button type="button" className="button secondary" id="sync-now" onClick={() => sync.mutate()} disabled={syncing || sync.isPending}>
        <RefreshCw size={14} aria-hidden="true" className={syncing ? "spin" : ""} /> {syncing ? t("sync.running") : t("sync.now")}
      </button>
      {sync.isError && !conflict && <ErrorMessage error={sync.error} />}
    </div>
  );
}

export function SyncBanner() {
  const { t } = useTranslation();
  return (
    <div className="banner banner-info" role="status" id="sync-banner">
      <RefreshCw size={16} aria-hidden="true" className="spin" /> {t("sync.inProgress")}
    </div>
  );
}
