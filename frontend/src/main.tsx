import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { ApiError } from "./api/client";
import { App } from "./App";
import { setupI18n } from "./i18n";
import { readBootstrapMe, SessionProvider } from "./session";
import "./styles.css";

const bootstrapMe = readBootstrapMe();
setupI18n(undefined, bootstrapMe?.language); // the user's earlier choice, else the language the server picked
const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 30_000,
      refetchOnWindowFocus: false,
      // 4xx answers are final (not connected, no permission, bad range): retry only network and 5xx.
      retry: (count, error) => count < 2 && !(error instanceof ApiError && error.status >= 400 && error.status < 500),
    },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <SessionProvider initialMe={bootstrapMe}>
        <App />
      </SessionProvider>
    </QueryClientProvider>
  </StrictMode>,
);
