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

const SYNC_KEY = "hub.syncStartedAt";
const SYNC_EVENT = "hub:sync-started";

/** Marks a sync as started (POST sync, or connecting an ad account, which starts one). */
export function announceSyncStarted(): void {
  sessionStorage.setItem(SYNC_KEY, new Date().toISOString());
  window.dispatchEvent(new Event(SYNC_EVENT));
}
export const SYNC_POLL_MS = 2000;
const GIVE_UP_MS = 15 * 60 * 1000;
const CLOCK_SLACK_MS = 60 * 1000;

/** When the user started a sync (this tab), until last_synced_at shows a run that began after it. */
export function useSyncProgress(lastSyncedAt: string | null | undefined) {
  const [startedAt, setStartedAt] = useState<string | null>(() => sessionStorage.getItem(SYNC_KEY));
  const start = useCallback(() => announceSyncStarted(), []);
  useEffect(() => {
    const follow = () => setStartedAt(sessionStorage.getItem(SYNC_KEY));
    window.addEventListener(SYNC_EVENT, follow);
    return () => window.removeEventListener(SYNC_EVENT, follow);
  }, []);
  useEffect(() => {
    if (!startedAt) return;
    const began = Date.parse(startedAt);
    const finished = lastSyncedAt && Date.parse(lastSyncedAt) >= began - CLOCK_SLACK_MS;
    if (finished || Date.now() - began > GIVE_UP_MS) {
      sessionStorage.removeItem(SYNC_KEY);
      setStartedAt(null);
    }
  }, [startedAt, lastSyncedAt]);
  return { syncing: startedAt !== null, start };
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
