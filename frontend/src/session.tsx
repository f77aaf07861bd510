/** Who is signed in, the account the hub acts for (X-Account) and the UI language. */
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { setAccountSlug } from "./api/client";
import { marketingApi } from "./api/marketing";
import type { Me, Membership, Role } from "./types/marketing";

export const ACCOUNT_KEY = "hub.account";
export const LANGUAGE_KEY = "hub.language";

const MARKETING_ROLES: Role[] = ["ceo", "admin", "marketing"];
const MANAGER_ROLES: Role[] = ["ceo", "admin"];

export interface Session {
  me: Me;
  membership: Membership | null;
  chooseAccount: (slug: string) => void;
  canSeeMarketing: boolean;
  canManage: boolean;
}

const SessionContext = createContext<Session | null>(null);

/** The /crm/me payload the shell page inlined, so the first page needs no extra round trip. */
export function readBootstrapMe(): Me | undefined {
  const node = document.getElementById("hub-bootstrap");
  if (!node?.textContent) return undefined;
  try {
    return (JSON.parse(node.textContent) as { me?: Me }).me;
  } catch {
    return undefined;
  }
}

export function pickMembership(me: Me, wanted: string | null): Membership | null {
  return me.memberships.find((m) => m.slug === wanted) ?? me.account ?? me.memberships[0] ?? null;
}

export function SessionProvider({ children, initialMe }: { children: ReactNode; initialMe?: Me }) {
  const { t } = useTranslation();
  const queryClient = useQueryClient();
  const [slug, setSlug] = useState<string | null>(() => localStorage.getItem(ACCOUNT_KEY));
  const me = useQuery({ queryKey: ["me"], queryFn: marketingApi.getMe, initialData: initialMe, staleTime: Infinity });

  const chooseAccount = useCallback((next: string) => {
    localStorage.setItem(ACCOUNT_KEY, next);
    setAccountSlug(next);
    setSlug(next);
    queryClient.removeQueries({ predicate: (query) => query.queryKey[0] !== "me" });
  }, [queryClient]);

  const membership = me.data ? pickMembership(me.data, slug) : null;
  setAccountSlug(membership?.slug ?? null); // before any child query runs
  const value = useMemo<Session | null>(() => me.data ? {
    me: me.data,
    membership,
    chooseAccount,
    canSeeMarketing: !!membership && MARKETING_ROLES.includes(membership.role),
    canManage: !!membership && MANAGER_ROLES.includes(membership.role),
  } : null, [me.data, membership, chooseAccount]);

  if (me.isPending) return <p className="page-state" role="status">{t("state.loading")}</p>;
  if (!value) return <p className="page-state error" role="alert">{t("state.error")} {me.error?.message}</p>;
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}

/** The account's currency, timezone and the UI language, for formatting. */
export function useFormat() {
  const { i18n } = useTranslation();
  const { membership } = useSession();
  return {
    language: i18n.language,
    currency: membership?.currency ?? "USD",
    timeZone: membership?.timezone ?? "UTC",
  };
}
