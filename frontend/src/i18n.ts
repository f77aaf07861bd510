/** react-i18next with Spanish (default) and English; the choice is kept in localStorage. */
import i18n from "i18next";
import { initReactI18next } from "react-i18next";
import en from "./locales/en";
import es from "./locales/es";

export const LANGUAGES = ["es", "en"] as const;

/** `language` forces one (tests); else the user's stored choice, else `serverDefault` (GET /crm/me's), else Spanish. */
export function setupI18n(language?: string, serverDefault?: string) {
  const stored = typeof localStorage !== "undefined" ? localStorage.getItem("hub.language") : null;
  const known = (value: string | null | undefined) => (value === "en" || value === "es" ? value : null);
  const lng = language ?? known(stored) ?? known(serverDefault) ?? "es";
  if (!i18n.isInitialized) {
    void i18n.use(initReactI18next).init({
      resources: { es: { translation: es }, en: { translation: en } },
      lng,
      fallbackLng: "es",
      interpolation: { escapeValue: false },
      returnNull: false,
    });
  } else if (i18n.language !== lng) {
    void i18n.changeLanguage(lng);
  }
  document.documentElement.lang = lng;
  return i18n;
}

i18n.on("languageChanged", (lng) => {
  if (typeof document !== "undefined") document.documentElement.lang = lng;
});

export default i18n;
