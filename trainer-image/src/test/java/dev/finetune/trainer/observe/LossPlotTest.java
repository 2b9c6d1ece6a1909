package dev.finetune.trainer.observe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.finetune.api.EpochRecord;
import dev.finetune.api.FineTuneJob;
import dev.finetune.api.trainer.TrainerContract;
import dev.finetune.trainer.train.TrainingListener.EpochInfo;
import dev.finetune.trainer.train.TrainingListener.RunInfo;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/** loss.svg is well-formed SVG with one point per epoch and series, the best epoch marked, rewritten per epoch. */
class LossPlotTest {
  static final String SVG_NS = "http://www.w3.org/2000/svg";

  @TempDir
  Path dir;

  static Document parse(String svg) throws Exception {
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    f.setNamespaceAware(true);
    f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
    return f.newDocumentBuilder().parse(new ByteArrayInputStream(svg.getBytes(StandardCharsets.UTF_8)));
  }

  /** The circles of a series, in document order. */
  static List<Element> points(Document d, String series) {
    NodeList circles = d.getElementsByTagNameNS(SVG_NS, "circle");
    List<Element> out = new ArrayList<>();
    for (int i = 0; i < circles.getLength(); i++) {
      Element c = (Element) circles.item(i);
      if (List.of(c.getAttribute("class").split(" ")).contains(series)) {
        out.add(c);
      }
    }
    return out;
  }

  @Test
  void onePointPerEpochAndSeriesWithTheBestEpochMarked() throws Exception {
    List<EpochRecord> h = new ArrayList<>();
    double[] val = {2.9, 2.1, 1.7, 1.75, 1.9, 2.2, 2.4};
    for (int e = 1; e <= val.length; e++) {
      h.add(new EpochRecord(e, 3.0 / e, val[e - 1]));
    }
    Path file = dir.resolve(TrainerContract.PLOT_FILE);
    LossPlot.write(file, "job <a&b>", h, 3);
    Document d = parse(Files.readString(file));
    Element root = d.getDocumentElement();
    assertThat(root.getLocalName()).isEqualTo("svg");
    assertThat(root.getNamespaceURI()).isEqualTo(SVG_NS);
    assertThat(d.getElementsByTagNameNS(SVG_NS, "title").item(0).getTextContent()).isEqualTo("job <a&b>");

    List<Element> train = points(d, "train");
    List<Element> validation = points(d, "validation");
    assertThat(train).hasSize(val.length);
    assertThat(validation).hasSize(val.length);
    for (int i = 0; i < val.length; i++) {
      assertThat(train.get(i).getAttribute("data-epoch")).isEqualTo(Integer.toString(i + 1));
      assertThat(Double.parseDouble(train.get(i).getAttribute("data-loss"))).isEqualTo(3.0 / (i + 1));
      assertThat(Double.parseDouble(validation.get(i).getAttribute("data-loss"))).isEqualTo(val[i]);
    }
    // x grows with the epoch; a lower loss is drawn higher (smaller y).
    for (int i = 1; i < val.length; i++) {
      assertThat(cx(train.get(i))).isGreaterThan(cx(train.get(i - 1)));
      assertThat(cy(train.get(i))).isGreaterThan(cy(train.get(i - 1)));
    }
    List<Element> best = points(d, "best");
    assertThat(best).hasSize(1);
    assertThat(best.get(0).getAttribute("data-epoch")).isEqualTo("3");
    assertThat(cx(best.get(0))).isCloseTo(cx(validation.get(2)), within(1e-9));
    assertThat(cy(best.get(0))).isCloseTo(cy(validation.get(2)), within(1e-9));
    // Everything is inside the canvas.
    for (Element c : train) {
      assertThat(cx(c)).isBetween(0.0, (double) LossPlot.WIDTH);
      assertThat(cy(c)).isBetween(0.0, (double) LossPlot.HEIGHT);
    }
    assertThat(d.getElementsByTagNameNS(SVG_NS, "polyline").getLength()).isEqualTo(2);
  }

  static double cx(Element e) {
    return Double.parseDouble(e.getAttribute("cx"));
  }

  static double cy(Element e) {
    return Double.parseDouble(e.getAttribute("cy"));
  }

  @Test
  void edgeCasesStayValid() throws Exception {
    Document empty = parse(LossPlot.svg("none", List.of(), 0));
    assertThat(points(empty, "train")).isEmpty();
    Document one = parse(LossPlot.svg("one", List.of(new EpochRecord(1, 1.0, 1.0)), 1));
    assertThat(points(one, "train")).hasSize(1);
    assertThat(points(one, "best")).hasSize(1);
    List<EpochRecord> many = new ArrayList<>();
    for (int e = 5; e <= 300; e++) {
      many.add(new EpochRecord(e, 1.0 + 1.0 / e, 1.1 + 1.0 / e));
    }
    Document d = parse(LossPlot.svg("many", many, 300));
    assertThat(points(d, "validation")).hasSize(296);
  }

  @Test
  void observabilityRewritesThePlotAfterEveryEpoch() throws Exception {
    FineTuneJob job = ObservabilityTest.job(3);
    Path out = dir.resolve("run");
    Path file = out.resolve(TrainerContract.PLOT_FILE);
    try (Observability obs = Observability.on(null, null)) {
      obs.onStart(new RunInfo(job, out, 3, 2, 6, 10, 2, List.of(), 10, null, null, 0, 0, List.of()));
      assertThat(file).doesNotExist();
      double best = Double.POSITIVE_INFINITY;
      int bestEpoch = 0;
      double[] val = {2.0, 1.8, 1.9};
      for (int e = 1; e <= 3; e++) {
        if (val[e - 1] < best) {
          best = val[e - 1];
          bestEpoch = e;
        }
        obs.onEpoch(new EpochInfo(new EpochRecord(e, 2.5 / e, val[e - 1]), best, bestEpoch, bestEpoch == e, e - bestEpoch));
        Document d = parse(Files.readString(file));
        assertThat(points(d, "train")).hasSize(e);
        assertThat(points(d, "validation")).hasSize(e);
        assertThat(points(d, "best").get(0).getAttribute("data-epoch")).isEqualTo(Integer.toString(bestEpoch));
      }
    }
  }
}
